"""An AutoGen AssistantAgent whose tools are governed by Haldir.

    pip install 'haldir[autogen]' 'autogen-ext[openai]'
    export HALDIR_API_KEY=hld_... HALDIR_BASE_URL=http://localhost:8000 OPENAI_API_KEY=sk-...
    python examples/autogen_agent.py
"""

import asyncio

from autogen_agentchat.agents import AssistantAgent
from autogen_ext.models.openai import OpenAIChatCompletionClient

from haldir import AsyncHaldirClient
from haldir.autogen import govern_tool


async def get_stock_price(ticker: str) -> float:
    """Latest price of a stock."""
    return 123.45


async def place_order(ticker: str, quantity: int) -> str:
    """Buy shares."""
    return f"bought {quantity} {ticker}"


async def main() -> None:
    async with AsyncHaldirClient() as h:
        sid = (await h.create_session("trader", scopes=["tool:get_stock_price", "tool:place_order", "spend:100"]))["session_id"]
        tools = [
            govern_tool(get_stock_price, sid, client=h),  # ← governing
            # An order costs its notional value; over the $100 cap it is refused before it runs.
            govern_tool(place_order, sid, client=h, cost=lambda args: 123.45 * args["quantity"]),
        ]
        agent = AssistantAgent("trader", model_client=OpenAIChatCompletionClient(model="gpt-4o-mini"), tools=tools)
        result = await agent.run(task="What does ACME trade at? Buy 1 share, then try to buy 10 more.")
        print(result.messages[-1].to_text())
        print("spent:", (await h.get_session(sid))["spent"])
        await h.revoke_session(sid)


asyncio.run(main())
