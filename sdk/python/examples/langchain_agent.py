"""A LangChain agent whose tools are governed by Haldir.

Two lines do the governing: `govern_tools(...)` (enforcement: scope check,
spend cap, audit) and, optionally, `HaldirCallbackHandler` (observation of
every tool start/end/error).

    pip install 'haldir[langchain]' langchain langchain-openai
    export HALDIR_API_KEY=hld_... HALDIR_BASE_URL=http://localhost:8000 OPENAI_API_KEY=sk-...
    python examples/langchain_agent.py
"""

from langchain.agents import create_agent
from langchain_core.tools import tool

from haldir import HaldirClient
from haldir.langchain import HaldirCallbackHandler, govern_tools


@tool
def search_docs(query: str) -> str:
    """Search the product documentation."""
    return f"3 results for {query!r}"


@tool
def buy_credits(amount: int) -> str:
    """Buy API credits."""
    return f"bought {amount} credits"


@tool
def delete_account(user: str) -> str:
    """Delete a user account."""
    return f"deleted {user}"


h = HaldirClient()
session = h.create_session("support-agent", scopes=["tool:search_docs", "tool:buy_credits", "spend:20"], ttl=900)
sid = session["session_id"]

# The session does not grant tool:delete_account, so that tool can never run.
tools = govern_tools([search_docs, buy_credits, delete_account], sid, client=h, costs={"buy_credits": 4.99})  # ← governing

agent = create_agent("openai:gpt-4o-mini", tools=tools)
result = agent.invoke(
    {"messages": [{"role": "user", "content": "Find the refund policy, buy 100 credits, then delete account bob."}]},
    config={"callbacks": [HaldirCallbackHandler(sid, h)]},  # ← observing (optional)
)
print(result["messages"][-1].content)
print("spent:", h.get_session(sid)["spent"])
h.revoke_session(sid)
