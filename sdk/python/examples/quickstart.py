"""Haldir in five calls: a governed session, a payment, an audit entry, a revocation.

Run against a local server (`haldir serve`):

    export HALDIR_BASE_URL=http://localhost:8000
    export HALDIR_API_KEY=hld_...        # from `curl -X POST localhost:8000/v1/keys` on a fresh install
    python examples/quickstart.py
"""

from haldir import BudgetExceededError, HaldirClient, SessionInvalidError

with HaldirClient() as h:
    # A session for one agent run: what it may do, what it may spend, for how long.
    session = h.create_session("quickstart-agent", scopes=["read", "tool", "spend:50"], ttl=600)
    sid = session["session_id"]
    print(f"session {sid}: scopes {session['scopes']}, cap ${session['spend_limit']}")

    print("may read?", h.check_permission(sid, "read")["allowed"])
    print("may delete?", h.check_permission(sid, "delete")["allowed"])

    payment = h.authorize_payment(sid, 29.99, description="api credits")
    print(f"authorised ${payment['amount']}; ${payment['remaining_budget']} left")
    try:
        h.authorize_payment(sid, 100)
    except BudgetExceededError as exc:
        print("refused:", exc.message)

    h.log_action(sid, tool="stripe", action="charge", details={"authorization_id": payment["authorization_id"]})
    for entry in h.get_audit_trail(session_id=sid, limit=5)["entries"]:
        print(f"  #{entry['seq']} {entry['type']:<20} {entry['tool']:<10} {entry['action']}")

    h.revoke_session(sid)
    try:
        h.authorize_payment(sid, 1)
    except SessionInvalidError as exc:
        print("after revocation:", exc.message)

    print("audit chain verified:", h.verify_audit()["verified"])
