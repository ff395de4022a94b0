import { expect } from "vitest";
import { callsFor, eventually, follow, question, scenario } from "./harness.ts";

const LOCK_MS = 4000;
const STALLED_CHECK_MS = 2000;

/**
 * Issue 14 item 5: Responses API responses are durable like every turn. A worker is SIGKILLed with
 * background responses in flight, some followed with `GET /v1/responses/{id}?stream=true` and some
 * with a streamed create. Done means every response ends `completed` on the other worker with the
 * text the fake upstream gives (it answers a question the same way each time), every stream ends
 * with `response.completed` whose text equals the stored output (the restarted run repeats what was
 * sent, which the stream passes over silently), and its sequence numbers run 0, 1, 2, … with no
 * gap or repeat.
 */
scenario("16 worker SIGKILLed: background and streamed responses complete on the other worker", { timeoutMs: 150_000 }, async (c) => {
  c.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 150 }); // ~4.5 s responses
  const env = { WORKER_LOCK_MS: String(LOCK_MS), WORKER_STALLED_CHECK_MS: String(STALLED_CHECK_MS) };
  const api = await c.start("api");
  const doomed = await c.start("worker", { env });
  const n = 12;
  const bound = 90_000;
  const inputs = Array.from({ length: n }, (_, i) => question(i, 28));
  const post = (body: object) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  // Half in the background (followed by GET ?stream=true), half streamed by their create.
  const background = await Promise.all(
    inputs.slice(0, n / 2).map(async (input) => {
      const res = await api.api.post("/responses", { model: "fake-model", input, background: true });
      expect(res.status).toBe(200);
      return (res.body as { id: string }).id;
    }),
  );
  const streams = [
    ...background.map((id) => follow(`${api.url}/responses/${id}?stream=true`, {}, bound)),
    ...inputs.slice(n / 2).map((input) => follow(`${api.url}/responses`, post({ model: "fake-model", input, stream: true }), bound)),
  ];
  await eventually("the first worker has every model call open", 30_000, async () => (c.upstream.requests.length >= n ? true : null));
  // Killed before the second worker starts, so every response is still in flight when its worker dies however
  // long the start takes (on a loaded machine the first worker finished them all while the second started).
  await doomed.kill();
  await c.start("worker", { env });

  const followed = await Promise.all(streams);
  const problems: string[] = [];
  let generatedTwice = 0;
  for (const [i, f] of followed.entries()) {
    if (callsFor(c, inputs[i]!).length > 1) generatedTwice++;
    const events = f.events.map((e) => JSON.parse(e.data) as { type: string; sequence_number: number; response?: { id: string; output_text?: string; output: { type: string; content?: { text: string }[] }[] } });
    const numbers = events.map((e) => e.sequence_number);
    if (numbers.some((s, k) => s !== k)) problems.push(`response ${i}: sequence numbers ${numbers.join(",")}`);
    const last = events.at(-1);
    if (!f.ended || last?.type !== "response.completed") {
      problems.push(`response ${i}: the stream ended with ${last?.type ?? f.error ?? "nothing"}`);
      continue;
    }
    const streamedText = events.filter((e) => e.type === "response.output_text.delta").map((e) => (e as unknown as { delta: string }).delta).join("");
    const id = last.response!.id;
    const stored = await api.api.get(`/responses/${id}`);
    const output = (stored.body as { status: string; output: { type: string; content?: { text: string }[] }[] });
    const storedText = output.output.filter((o) => o.type === "message").flatMap((o) => o.content ?? []).map((p) => p.text).join("");
    if (output.status !== "completed") problems.push(`response ${i}: stored ${output.status}`);
    if (streamedText !== storedText) problems.push(`response ${i}: streamed ${JSON.stringify(streamedText)}, stored ${JSON.stringify(storedText)}`);
    if (!storedText.includes(inputs[i]!)) problems.push(`response ${i}: stored text does not answer its input`);
  }
  c.note(`${generatedTwice} of ${n} responses generated twice after the kill; all streams ended response.completed with the stored text`);
  expect(generatedTwice).toBeGreaterThan(0);
  expect(problems).toEqual([]);
});
