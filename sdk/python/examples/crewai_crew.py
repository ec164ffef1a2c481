"""A CrewAI crew whose tools are governed by Haldir.

    pip install 'haldir[crewai]'
    export HALDIR_API_KEY=hld_... HALDIR_BASE_URL=http://localhost:8000 OPENAI_API_KEY=sk-...
    python examples/crewai_crew.py
"""

from crewai import Agent, Crew, Task
from crewai.tools import tool

from haldir import HaldirClient
from haldir.crewai import govern_tools


@tool("web_search")
def web_search(query: str) -> str:
    """Search the web."""
    return f"top result for {query!r}"


@tool("send_invoice")
def send_invoice(customer: str, amount: float) -> str:
    """Send an invoice to a customer."""
    return f"invoice for ${amount} sent to {customer}"


h = HaldirClient()
sid = h.create_session("billing-crew", scopes=["tool", "spend:5"], ttl=900)["session_id"]

# Every call is scope-checked and audited; each invoice costs $0.50 against the $5 cap.
tools = govern_tools([web_search, send_invoice], sid, client=h, costs={"send_invoice": 0.50})  # ← governing

analyst = Agent(role="Billing analyst", goal="Invoice customers correctly", backstory="Careful with money.", tools=tools, llm="gpt-4o-mini")
task = Task(description="Look up ACME's billing contact, then invoice them $120.", expected_output="A confirmation", agent=analyst)
print(Crew(agents=[analyst], tasks=[task]).kickoff())

for entry in h.iter_audit_trail(session_id=sid):
    print(entry["seq"], entry["tool"], entry["action"], entry.get("details", {}).get("cost_usd", ""))
h.revoke_session(sid)
