import { describe, it, expect } from "vitest";
import { createSimulatorProvider, simulateParamsSchema } from "../../src/providers/simulator.ts";
import { ProviderError, type ChatChunk, type ChatMessage, type ChatRequest, type FinishReason, type TokenUsage } from "../../src/providers/types.ts";

/** Unpaced: no sleeps at all, so every test runs as fast as the CPU allows. */
const instant = createSimulatorProvider({ ttftMs: 0, tokensPerSecond: 0 });
const noSignal = new AbortController().signal;

function request(content: string, params: Record<string, unknown> = {}, model = "parley-sim-1"): ChatRequest {
  return { model, messages: [{ role: "user", content }], params };
}

interface Collected {
  deltas: string[];
  text: string;
  finishReason: FinishReason;
  usage: TokenUsage | null;
}

async function collect(stream: AsyncIterable<ChatChunk>): Promise<Collected> {
  const deltas: string[] = [];
  for await (const chunk of stream) {
    if (chunk.type === "delta") deltas.push(chunk.content ?? "");
    else return { deltas, text: deltas.join(""), finishReason: chunk.finishReason, usage: chunk.usage };
  }
  throw new Error("stream ended without a finish chunk");
}

/** Deltas received before the stream threw, and what it threw. */
async function collectUntilError(stream: AsyncIterable<ChatChunk>): Promise<{ deltas: string[]; error: unknown }> {
  const deltas: string[] = [];
  try {
    for await (const chunk of stream) if (chunk.type === "delta" && chunk.content !== undefined) deltas.push(chunk.content);
  } catch (error) {
    return { deltas, error };
  }
  throw new Error("stream finished without an error");
}

const stream = (req: ChatRequest) => collect(instant.streamChat(req, noSignal));

describe("simulator provider", () => {
  it("is named simulator", () => {
    expect(instant.name).toBe("simulator");
  });

  describe("reply text", () => {
    it("gives the same prompt the same reply", async () => {
      const first = await stream(request("Tell me about rivers."));
      const second = await stream(request("Tell me about rivers."));
      expect(second.text).toBe(first.text);
      expect(second.deltas).toEqual(first.deltas);
    });

    it("gives different prompts, models and seeds different replies", async () => {
      const base = await stream(request("Tell me about rivers."));
      const otherPrompt = await stream(request("Tell me about mountains."));
      const otherModel = await stream(request("Tell me about rivers.", {}, "parley-sim-2"));
      const otherSeed = await stream(request("Tell me about rivers.", { seed: 7 }));
      expect(otherPrompt.text).not.toBe(base.text);
      expect(otherModel.text).not.toBe(base.text);
      expect(otherSeed.text).not.toBe(base.text);
    });

    it("reads as sentences: capitalised, ending with a period", async () => {
      const { text } = await stream(request("Say something."));
      expect(text).toMatch(/^[A-Z][a-z]*[ ,.]/);
      expect(text.endsWith(".")).toBe(true);
      for (const sentence of text.split(". ").slice(1)) expect(sentence).toMatch(/^[A-Z]/);
    });

    it("sends words as deltas, each after the first with one leading space", async () => {
      const { deltas } = await stream(request("Say something."));
      expect(deltas[0]).toMatch(/^\S+$/);
      for (const delta of deltas.slice(1)) expect(delta).toMatch(/^ \S+$/);
    });

    it("is 16 to 64 tokens long by default", async () => {
      const lengths = new Set<number>();
      for (let i = 0; i < 40; i++) {
        const { deltas, usage, finishReason } = await stream(request(`prompt number ${i}`));
        expect(deltas.length).toBeGreaterThanOrEqual(16);
        expect(deltas.length).toBeLessThanOrEqual(64);
        expect(usage?.completion_tokens).toBe(deltas.length);
        expect(finishReason).toBe("stop");
        lengths.add(deltas.length);
      }
      expect(lengths.size).toBeGreaterThan(1);
    });

    it("is exactly simulate.reply_tokens long when asked, with the same words", async () => {
      const long = await stream(request("Go on.", { simulate: { reply_tokens: 500 } }));
      const short = await stream(request("Go on.", { simulate: { reply_tokens: 10 } }));
      expect(long.deltas).toHaveLength(500);
      expect(long.finishReason).toBe("stop");
      expect(short.deltas).toHaveLength(10);
      expect(short.deltas.slice(0, 9)).toEqual(long.deltas.slice(0, 9));
      const empty = await stream(request("Go on.", { simulate: { reply_tokens: 0 } }));
      expect(empty).toMatchObject({ deltas: [], finishReason: "stop", usage: { completion_tokens: 0 } });
    });
  });

  it("completeChat returns what the stream's deltas add up to", async () => {
    for (const params of [{}, { max_tokens: 7 }, { simulate: { reply_tokens: 200 } }]) {
      const req = request("Explain queues.", params);
      const streamed = await stream(req);
      const completed = await instant.completeChat(req, noSignal);
      expect(completed).toEqual({ choices: [{ content: streamed.text, finishReason: streamed.finishReason }], usage: streamed.usage });
    }
  });

  describe("max_tokens", () => {
    it("stops after exactly that many tokens with finish reason length", async () => {
      const full = await stream(request("Explain queues."));
      const cut = await stream(request("Explain queues.", { max_tokens: 5 }));
      expect(cut.deltas).toEqual(full.deltas.slice(0, 5));
      expect(cut.finishReason).toBe("length");
      expect(cut.usage?.completion_tokens).toBe(5);
    });

    it("honours max_completion_tokens too, the smaller of the two winning", async () => {
      const cut = await stream(request("Explain queues.", { max_tokens: 9, max_completion_tokens: 3 }));
      expect(cut.deltas).toHaveLength(3);
      expect(cut.finishReason).toBe("length");
    });

    it("finishes with stop when the reply fits", async () => {
      const fits = await stream(request("Explain queues.", { max_tokens: 64, simulate: { reply_tokens: 64 } }));
      expect(fits.deltas).toHaveLength(64);
      expect(fits.finishReason).toBe("stop");
    });
  });

  describe("stop sequences", () => {
    const prompt = "Describe a harbor at dawn.";
    const fullText = async () => (await stream(request(prompt, { simulate: { reply_tokens: 60 } }))).text;
    const withStop = (stop: unknown, extra: Record<string, unknown> = {}) =>
      stream(request(prompt, { stop, simulate: { reply_tokens: 60 }, ...extra }));

    it("cuts the reply right before the sequence, even mid-word and across tokens", async () => {
      const text = await fullText();
      const middle = text.indexOf(" ", Math.floor(text.length / 2)) + 2; // inside a word
      for (const stop of [text.slice(middle, middle + 3), text.slice(middle, middle + 15)]) {
        const cut = await withStop(stop);
        expect(cut.text).toBe(text.slice(0, text.indexOf(stop)));
        expect(cut.finishReason).toBe("stop");
        expect(cut.text).not.toContain(stop);
        for (const delta of cut.deltas) expect(delta).not.toContain(stop);
        expect(cut.usage?.completion_tokens).toBe(cut.deltas.length);
      }
    });

    it("takes an array and cuts at whichever sequence comes first", async () => {
      const text = await fullText();
      const early = text.slice(20, 26);
      const late = text.slice(text.length - 12, text.length - 6);
      const cut = await withStop([late, early]);
      expect(cut.text).toBe(text.slice(0, text.indexOf(early)));
      expect(cut.finishReason).toBe("stop");
    });

    it("ignores a sequence that would only complete after max_tokens", async () => {
      const text = await fullText();
      const cut = await withStop(text.slice(text.length - 8), { max_tokens: 10 });
      expect(cut.deltas).toHaveLength(10);
      expect(cut.finishReason).toBe("length");
    });

    it("finishes normally when the sequence never appears", async () => {
      const text = await fullText();
      const cut = await withStop(["§§§", ""]);
      expect(cut).toMatchObject({ text, finishReason: "stop" });
    });
  });

  describe("usage", () => {
    it("counts word-ish pieces plus 4 per message for the prompt", async () => {
      const messages: ChatMessage[] = [
        { role: "system", content: "Be terse." }, // Be, terse, "." → 3 + 4
        { role: "user", content: "one two three" }, // 3 + 4
      ];
      const { usage, deltas } = await collect(instant.streamChat({ model: "parley-sim-1", messages, params: {} }, noSignal));
      expect(usage).toEqual({
        prompt_tokens: 14,
        completion_tokens: deltas.length,
        total_tokens: 14 + deltas.length,
      });
    });

    it("grows with the prompt and adds up", async () => {
      const short = await stream(request("hi"));
      const long = await stream(request("hi ".repeat(100)));
      expect(long.usage!.prompt_tokens).toBeGreaterThan(short.usage!.prompt_tokens);
      for (const { usage, deltas } of [short, long]) {
        expect(usage!.completion_tokens).toBe(deltas.length);
        expect(usage!.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
      }
    });
  });

  describe("simulated failures", () => {
    it("throws simulated_failure after exactly fail_after_tokens deltas", async () => {
      const req = request("Fail please.", { simulate: { fail_after_tokens: 3, error_message: "upstream fell over" } });
      const { deltas, error } = await collectUntilError(instant.streamChat(req, noSignal));
      expect(deltas).toHaveLength(3);
      expect(error).toBeInstanceOf(ProviderError);
      expect(error).toMatchObject({ code: "simulated_failure", message: "upstream fell over", status: 502 });
    });

    it("fails before any delta with fail_after_tokens 0", async () => {
      const req = request("Fail please.", { simulate: { fail_after_tokens: 0 } });
      const { deltas, error } = await collectUntilError(instant.streamChat(req, noSignal));
      expect(deltas).toEqual([]);
      expect(error).toMatchObject({ name: "ProviderError", code: "simulated_failure" });
    });

    it("fails instead of finishing when the reply is exactly that long, and not at all when shorter", async () => {
      const atEnd = request("Fail please.", { simulate: { fail_after_tokens: 20, reply_tokens: 20 } });
      const { deltas } = await collectUntilError(instant.streamChat(atEnd, noSignal));
      expect(deltas).toHaveLength(20);
      const beyond = request("Fail please.", { simulate: { fail_after_tokens: 21, reply_tokens: 20 } });
      expect((await stream(beyond)).finishReason).toBe("stop");
    });

    it("makes completeChat reject too", async () => {
      const req = request("Fail please.", { simulate: { fail_after_tokens: 2 } });
      await expect(instant.completeChat(req, noSignal)).rejects.toMatchObject({ code: "simulated_failure" });
    });
  });

  describe("invalid simulate params", () => {
    it.each([
      [{ fail_after_tokens: -1 }, "simulate.fail_after_tokens"],
      [{ reply_tokens: 1.5 }, "simulate.reply_tokens"],
      [{ ttft_ms: "100" }, "simulate.ttft_ms"],
      [{ tokens_per_second: -5 }, "simulate.tokens_per_second"],
      [{ error_message: 42 }, "simulate.error_message"],
      [{ fail_after_token: 3 }, "fail_after_token"],
      ["fail", "simulate"],
    ])("rejects %j, naming %s", async (simulate, field) => {
      const req = request("Hello.", { simulate });
      const { deltas, error } = await collectUntilError(instant.streamChat(req, noSignal));
      expect(deltas).toEqual([]);
      expect(error).toBeInstanceOf(ProviderError);
      expect(error).toMatchObject({ code: "invalid_simulate_params" });
      expect((error as Error).message).toContain(field);
      await expect(instant.completeChat(req, noSignal)).rejects.toMatchObject({ code: "invalid_simulate_params" });
    });

    it("exports the schema for the HTTP layer", () => {
      expect(simulateParamsSchema.safeParse({ fail_after_tokens: 2, ttft_ms: 0 }).success).toBe(true);
      expect(simulateParamsSchema.safeParse({ nope: true }).success).toBe(false);
    });
  });

  describe("pacing", () => {
    function recordingSimulator(ttftMs: number, tokensPerSecond: number) {
      const sleeps: number[] = [];
      const provider = createSimulatorProvider({
        ttftMs,
        tokensPerSecond,
        sleep: async (ms) => {
          sleeps.push(ms);
        },
      });
      return { provider, sleeps };
    }

    it("waits the time to first token, then one interval between deltas", async () => {
      const { provider, sleeps } = recordingSimulator(150, 50);
      const { deltas } = await collect(provider.streamChat(request("Pace yourself."), noSignal));
      expect(sleeps).toEqual([150, ...Array<number>(deltas.length - 1).fill(20)]);
    });

    it("takes per-request pacing from simulate", async () => {
      const { provider, sleeps } = recordingSimulator(150, 50);
      const req = request("Pace yourself.", { simulate: { ttft_ms: 500, tokens_per_second: 4, reply_tokens: 3 } });
      await collect(provider.streamChat(req, noSignal));
      expect(sleeps).toEqual([500, 250, 250]);
    });

    it("does not sleep at all when both are 0", async () => {
      const { provider, sleeps } = recordingSimulator(150, 50);
      const req = request("Hurry.", { simulate: { ttft_ms: 0, tokens_per_second: 0, reply_tokens: 1000 } });
      const { deltas } = await collect(provider.streamChat(req, noSignal));
      expect(deltas).toHaveLength(1000);
      expect(sleeps).toEqual([]);
    });

    it("pays sub-millisecond intervals in batches, keeping the rate", async () => {
      const { provider, sleeps } = recordingSimulator(0, 4000);
      const req = request("Hurry.", { simulate: { reply_tokens: 101 } });
      await collect(provider.streamChat(req, noSignal));
      expect(sleeps).toHaveLength(25);
      expect(sleeps.reduce((a, b) => a + b, 0)).toBeCloseTo(25);
    });
  });

  describe("abort", () => {
    // Real timers: a stream that ignored the signal would outlive the test timeout.
    const slow = createSimulatorProvider({ ttftMs: 0, tokensPerSecond: 1 });

    it("rejects with an AbortError when aborted between slow deltas", async () => {
      const controller = new AbortController();
      const req = request("Take your time.", { simulate: { tokens_per_second: 0.001 } });
      const iterator = slow.streamChat(req, controller.signal)[Symbol.asyncIterator]();
      expect((await iterator.next()).value).toMatchObject({ type: "delta" });
      const next = iterator.next();
      setTimeout(() => controller.abort(), 10);
      await expect(next).rejects.toMatchObject({ name: "AbortError" });
    });

    it("rejects with an AbortError when aborted while waiting for the first token", async () => {
      const controller = new AbortController();
      const req = request("Take your time.", { simulate: { ttft_ms: 600_000 } });
      const reply = slow.completeChat(req, controller.signal);
      setTimeout(() => controller.abort(new Error("client went away")), 10);
      await expect(reply).rejects.toMatchObject({ name: "AbortError" });
    });

    it("rejects with an AbortError at once when the signal is already aborted", async () => {
      const req = request("Never mind.");
      const { deltas, error } = await collectUntilError(instant.streamChat(req, AbortSignal.abort()));
      expect(deltas).toEqual([]);
      expect(error).toMatchObject({ name: "AbortError" });
    });

    it("stops an unpaced bulk reply too", async () => {
      const controller = new AbortController();
      const req = request("Lots.", { simulate: { reply_tokens: 100_000 } });
      let received = 0;
      const run = (async () => {
        for await (const chunk of instant.streamChat(req, controller.signal)) {
          if (chunk.type === "delta" && ++received === 100) controller.abort();
        }
      })();
      await expect(run).rejects.toMatchObject({ name: "AbortError" });
      expect(received).toBe(100);
    });
  });
});
