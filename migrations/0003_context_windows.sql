ALTER TABLE "conversations" ADD COLUMN "context_strategy" text DEFAULT 'auto' NOT NULL;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "tokens" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "history_tokens" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "context_messages" integer;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "context_tokens" integer;--> statement-breakpoint
-- Messages stored before token counting get an estimate (about 4 characters a token); new ones are counted by the tokenizer.
UPDATE "messages" SET "tokens" = 4 + ceil(char_length("content") / 4.0)::int WHERE "status" NOT IN ('queued', 'in_progress');--> statement-breakpoint
UPDATE "messages" m SET "history_tokens" = t.total FROM (
  SELECT "id", sum(CASE WHEN "role" <> 'assistant' OR "status" = 'completed' OR ("status" = 'cancelled' AND "content" <> '') THEN "tokens" ELSE 0 END)
    OVER (PARTITION BY "conversation_id" ORDER BY "seq") AS total
  FROM "messages"
) t WHERE m."id" = t."id";--> statement-breakpoint
CREATE INDEX "messages_conversation_history_tokens_idx" ON "messages" USING btree ("conversation_id","history_tokens");