import { describe, expect, it } from "vitest";
import { postForEvents } from "../support/http.ts";
import { useTestService } from "../support/service.ts";

const ctx = useTestService();

describe("turns served by the built-in simulator", () => {
  it("answers the same prompt with the same text, and honours max_tokens", async () => {
    const a = (await ctx.api.post("/conversations", { system: "S" })).body;
    const b = (await ctx.api.post("/conversations", { system: "S" })).body;
    const ra = await ctx.api.post(`/conversations/${a.id}/messages`, { content: "same question" });
    const rb = await ctx.api.post(`/conversations/${b.id}/messages`, { content: "same question" });
    expect(ra.body.reply.content).toBe(rb.body.reply.content);
    expect(ra.body.reply.content.length).toBeGreaterThan(0);

    const c = (await ctx.api.post("/conversations", { params: { max_tokens: 3 } })).body;
    const rc = await ctx.api.post(`/conversations/${c.id}/messages`, { content: "long answer please", params: { simulate: { reply_tokens: 50 } } });
    expect(rc.body.reply.finish_reason).toBe("length");
    expect(rc.body.reply.usage.completion_tokens).toBe(3);
  });

  it("fails mid-stream on demand, keeping the partial content", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    const res = await postForEvents(`${ctx.service.url}/v1/conversations/${conv.id}/messages`, {
      content: "fail after two",
      stream: true,
      params: { simulate: { fail_after_tokens: 2, reply_tokens: 10 } },
    });
    const deltas = res.events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content);
    expect(deltas).toHaveLength(2);
    const failed = JSON.parse(res.events.find((e) => e.event === "message.failed")!.data);
    expect(failed).toMatchObject({ status: "failed", content: deltas.join("") });
    expect(failed.error.code).toBe("simulated_failure");
    const stored = await ctx.api.get(`/conversations/${conv.id}/messages/${failed.id}`);
    expect(stored.body).toMatchObject({ status: "failed", content: deltas.join("") });
  });

  it("shows a reply's content so far while it is in flight", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    const started = await ctx.api.post(`/conversations/${conv.id}/messages`, {
      content: "slowly",
      wait: false,
      params: { simulate: { tokens_per_second: 20, reply_tokens: 40 } },
    });
    let seen: any;
    for (let i = 0; i < 100; i++) {
      seen = (await ctx.api.get(`/conversations/${conv.id}/messages/${started.body.reply.id}`)).body;
      if (seen.status === "in_progress" && seen.content.length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(seen.status).toBe("in_progress");
    expect(seen.content.length).toBeGreaterThan(0);
    const final = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "next" }); // busy until done
    expect(final.status).toBe(409);
  });
});
