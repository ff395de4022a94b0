ALTER TABLE "conversations" ALTER COLUMN "params" SET DATA TYPE json;--> statement-breakpoint
ALTER TABLE "conversations" ALTER COLUMN "params" SET DEFAULT '{}'::json;--> statement-breakpoint
ALTER TABLE "messages" ALTER COLUMN "params" SET DATA TYPE json;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "parts" json;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "name" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "tool_calls" json;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "tool_call_id" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "reasoning" text;--> statement-breakpoint
ALTER TABLE "messages" ADD COLUMN "logprobs" json;