"""Human-in-the-loop: a governed tool whose spend needs a person's approval.

Needs the approvals API (POST /v1/approvals/rules, /v1/approvals/{id}/approve).

    export HALDIR_API_KEY=hld_... HALDIR_BASE_URL=http://localhost:8000
    python examples/approvals.py
"""

from haldir import ApprovalRequiredError, HaldirClient, govern

h = HaldirClient()
h.create_approval_rule("spend_over", threshold=100)  # any payment over $100 needs a human
sid = h.create_session("procurement-bot", scopes=["tool", "spend:5000"])["session_id"]


@govern(sid, client=h, cost=lambda args: args["price"])
def buy_server(model: str, price: float) -> str:
    return f"ordered a {model}"


try:
    buy_server("r760", price=2400)
except ApprovalRequiredError as exc:
    print(f"waiting for approval {exc.request_id} … (approve it in the dashboard, or here:)")
    h.approve(exc.request_id, decided_by="cfo@example.com", note="budgeted")
    decision = h.wait_for_approval(exc.request_id, timeout=600)
    if decision["status"] == "approved":
        print(buy_server("r760", price=2400))  # the same call now succeeds, once
