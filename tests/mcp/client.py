"""orch's MCP server through the official Python MCP SDK (PyPI `mcp`).

Run by tests/e2e/mcp.rs: `python client.py ORCH WORKDIR STORE`. It starts
`orch mcp --as AGENT` over stdio in WORKDIR (whose orch.yaml is the
simulated fleet) and checks what an agent's MCP client sees: the tools and
their schemas, a delegation answered as structured content with progress,
an ACL denial, a cancelled delegation (its `cancelled` ledger line),
delegate_start / delegate_wait with the answer submitted by another agent's
server through handoff_submit, and a workflow run. Exits non-zero with the
failed check.
"""

import json
import os
import sys
import time

import anyio
import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ORCH, WORKDIR, STORE = sys.argv[1], sys.argv[2], sys.argv[3]
TOOLS = [
    "delegate",
    "delegate_start",
    "delegate_wait",
    "handoff_submit",
    "metrics",
    "route",
    "workflow_approve",
    "workflow_list",
    "workflow_run",
    "workflow_status",
]


def server(agent):
    return StdioServerParameters(
        command=ORCH,
        args=["mcp", "--as", agent],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": WORKDIR,
            "ORCH_HANDOFF_DIR": STORE,
            "NO_COLOR": "1",
        },
        cwd=WORKDIR,
    )


def ledger():
    try:
        with open(os.path.join(STORE, "ledger.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def text(res):
    return "\n".join(c.text for c in res.content if getattr(c, "text", None))


async def tools_and_delegate(s):
    tools = (await s.list_tools()).tools
    names = sorted(t.name for t in tools)
    check(names == TOOLS, f"tools: {names}")
    for t in tools:
        jsonschema.Draft202012Validator.check_schema(t.input_schema)
        check(t.output_schema is not None, f"{t.name} has no output schema")
        jsonschema.Draft202012Validator.check_schema(t.output_schema)
        check(t.description and len(t.description) > 20, f"{t.name}: no description")

    said = []

    async def progress(p, total, message):
        said.append(message or "")

    res = await s.call_tool(
        "delegate",
        {"agent": "webster", "task": "CTE of ULE at 20 °C?"},
        progress_callback=progress,
    )
    check(not res.is_error, f"delegate: {text(res)}")
    out = res.structured_content
    check(out["status"] == "complete" and out["agent"] == "webster", f"delegate: {out}")
    check("CTE of ULE" in out["result"], f"delegate result: {out}")
    check(out["confidence"] == "high", f"confidence: {out}")
    check(any("sending the task to webster" in m for m in said), f"progress: {said}")
    check(any("webster has the task" in m for m in said), f"progress: {said}")

    # A malformed answer: the re-ask is told as it happens.
    said.clear()
    res = await s.call_tool(
        "delegate",
        {"agent": "webster", "task": "[sim:malformed-once] CTE of Invar"},
        progress_callback=progress,
    )
    check(not res.is_error and res.structured_content["status"] == "complete", f"re-asked: {text(res)}")
    check(any("asking webster again (ask 2" in m for m in said), f"progress: {said}")
    dispatched = [l for l in ledger() if l["event"] == "dispatched" and l["runId"] == out["runId"]]
    check(dispatched and dispatched[0]["caller"] == "manager", f"ledger: {dispatched}")

    # auto: routed within the ACL.
    res = await s.call_tool("delegate", {"agent": "auto", "task": "a task for webster: look up the CTE of Zerodur"})
    check(not res.is_error, f"auto: {text(res)}")
    check(res.structured_content["routedTo"] == res.structured_content["agent"], f"auto: {res.structured_content}")

    # The same answer as a resource.
    templates = (await s.list_resource_templates()).resource_templates
    uris = sorted(t.uri_template for t in templates)
    check(uris == ["orch://handoff/{runId}", "orch://workflow/{runId}"], f"templates: {uris}")
    read = await s.read_resource("orch://handoff/" + out["runId"])
    doc = json.loads(read.contents[0].text)
    check(doc["runId"] == out["runId"] and doc["result"] == out["result"], f"resource: {doc}")
    try:
        await s.read_resource("orch://handoff/orch-nope-1")
        raise AssertionError("a missing handoff read as a resource")
    except Exception as e:  # the SDK raises the JSON-RPC error
        check("no handoff" in str(e), f"missing resource: {e}")

    res = await s.call_tool("delegate", {"agent": "nobody", "task": "x"})
    check(res.is_error and "unknown agent" in text(res), f"unknown agent: {text(res)}")

    res = await s.call_tool("route", {"task": "a task for webster: look up the CTE of Zerodur"})
    check(not res.is_error and res.structured_content["allowed"], f"route: {text(res)}")


async def denied():
    async with stdio_client(server("tech-lead")) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        res = await s.call_tool("delegate", {"agent": "auditor", "task": "audit this"})
        check(res.is_error, "tech-lead → auditor was allowed")
        check("may not delegate to auditor" in text(res), f"denial: {text(res)}")
        check("webster" in text(res), f"the denial names whom it may delegate to: {text(res)}")
        check(
            not any(
                l.get("agent") == "auditor" and l.get("caller") == "tech-lead" and l["event"] == "dispatched"
                for l in ledger()
            ),
            "sent anyway",
        )


async def cancel(s):
    before = {l.get("runId") for l in ledger()}
    with anyio.move_on_after(2.0):
        await s.call_tool("delegate", {"agent": "webster", "task": "[sim:slow] a long one"})
        raise AssertionError("a slow delegation returned")
    # The server hears notifications/cancelled and cancels the delegation:
    # its ledger gets a `cancelled` line.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = [l for l in ledger() if l.get("runId") not in before]
        if any(l["event"] == "cancelled" for l in new):
            break
        await anyio.sleep(0.05)
    else:
        raise AssertionError(f"no cancelled line: {new}")
    # The session goes on.
    await s.send_ping()


async def start_wait_submit(s):
    res = await s.call_tool("delegate_start", {"agent": "webster", "task": "[sim:slow] answer through MCP"})
    check(not res.is_error, f"start: {text(res)}")
    run = res.structured_content["runId"]
    res = await s.call_tool("delegate_wait", {"run_id": run, "wait_seconds": 0})
    check(res.structured_content["status"] == "pending", f"wait: {res.structured_content}")

    # webster answers through its own server: no paths, no scope.
    async with stdio_client(server("webster")) as (r, w), ClientSession(r, w) as ws:
        await ws.initialize()
        res = await ws.call_tool(
            "handoff_submit",
            {"run_id": run, "status": "complete", "result": "0 ± 30 ppb/K", "confidence": "high", "notes": "Corning datasheet"},
        )
        check(not res.is_error, f"submit: {text(res)}")
        check(res.structured_content["location"].endswith(run + ".json"), f"submit: {res.structured_content}")
        res = await ws.call_tool("handoff_submit", {"run_id": run, "status": "failed", "result": "again"})
        check(res.is_error and "already" in text(res), f"second submit: {text(res)}")
        res = await ws.call_tool("handoff_submit", {"run_id": "nope-1", "status": "complete", "result": "x"})
        check(res.is_error and "never dispatched" in text(res), f"unknown run: {text(res)}")
    async with stdio_client(server("tech-lead")) as (r, w), ClientSession(r, w) as ts:
        await ts.initialize()
        res = await ts.call_tool("handoff_submit", {"run_id": run, "status": "complete", "result": "mine"})
        check(res.is_error and "dispatched to webster" in text(res), f"foreign answer: {text(res)}")

    res = await s.call_tool("delegate_wait", {"run_id": run, "wait_seconds": 30})
    check(not res.is_error, f"wait: {text(res)}")
    out = res.structured_content
    check(out["status"] == "complete" and out["handoff"]["result"] == "0 ± 30 ppb/K", f"wait: {out}")
    check(out["handoff"]["notes"] == "Corning datasheet", f"notes: {out}")
    res = await s.call_tool("delegate_wait", {"run_id": run})
    check(res.is_error and "already taken" in text(res), f"second wait: {text(res)}")


async def workflows(s):
    res = await s.call_tool("workflow_list", {})
    names = [w["name"] for w in res.structured_content["workflows"]]
    check("quick-research" in names and "research-brief" in names, f"list: {names}")
    said = []

    async def progress(p, total, message):
        said.append(message or "")

    res = await s.call_tool(
        "workflow_run",
        {"name": "quick-research", "inputs": {"query": "CTE of Zerodur"}},
        progress_callback=progress,
    )
    check(not res.is_error, f"workflow_run: {text(res)}")
    out = res.structured_content
    check(out["status"] == "completed", f"workflow_run: {out}")
    check(out["summary"]["caller"] == "manager", f"caller: {out['summary']}")
    check(any(m.startswith("research") for m in said), f"progress: {said}")
    res = await s.call_tool("workflow_status", {"run_id": out["runId"]})
    check(res.structured_content["status"] == "completed", f"status: {res.structured_content}")
    read = await s.read_resource("orch://workflow/" + out["runId"])
    check(json.loads(read.contents[0].text)["status"] == "completed", "workflow resource")
    res = await s.call_tool("workflow_run", {"name": "quick-reserch", "inputs": {}})
    check(res.is_error and "no workflow" in text(res), f"unknown workflow: {text(res)}")
    res = await s.call_tool("metrics", {"agent": "webster"})
    check(not res.is_error and res.structured_content["totals"]["delegations"] >= 1, f"metrics: {text(res)}")


GATED = """name: gated
steps:
  - id: draft
    agent: webster
    task: Draft the test note
    gate: { approval: true }
  - id: review
    agent: auditor
    task: "Review this draft: {{ steps.draft.result }}"
output: "{{ steps.review.result }}"
"""


async def approvals(s):
    with open(os.path.join(WORKDIR, "gated.yaml"), "w", encoding="utf-8") as f:
        f.write(GATED)
    res = await s.call_tool("workflow_run", {"name": "gated.yaml", "inputs": {}})
    check(not res.is_error, f"gated run: {text(res)}")
    out = res.structured_content
    check(out["status"] == "awaiting-approval", f"gated: {out}")
    run = out["runId"]
    # Only the configured approvers (default: the manager) may decide.
    async with stdio_client(server("tech-lead")) as (r, w), ClientSession(r, w) as ts:
        await ts.initialize()
        res = await ts.call_tool("workflow_approve", {"run_id": run, "step": "draft", "approve": True})
        check(res.is_error and "may not approve" in text(res), f"tech-lead approving: {text(res)}")
    res = await s.call_tool("workflow_approve", {"run_id": run, "step": "review", "approve": True})
    check(res.is_error and "not awaiting approval" in text(res), f"wrong step: {text(res)}")
    res = await s.call_tool("workflow_approve", {"run_id": run, "step": "draft", "approve": True})
    check(not res.is_error and res.structured_content["resumed"], f"approve: {text(res)}")
    # The server takes the run up again: it completes.
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        res = await s.call_tool("workflow_status", {"run_id": run})
        status = res.structured_content["status"]
        if status == "completed":
            break
        await anyio.sleep(0.05)
    check(status == "completed", f"after approval: {status}")


async def main():
    async with stdio_client(server("manager")) as (r, w), ClientSession(r, w) as s:
        init = await s.initialize()
        check(init.server_info.name == "orch", f"server: {init.server_info}")
        await tools_and_delegate(s)
        await cancel(s)
        await start_wait_submit(s)
        await workflows(s)
        await approvals(s)
    await denied()
    print("ok")


anyio.run(main)
