CREATE TABLE "responses" (
	"id" text PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"conversation_id" text NOT NULL,
	"reply_id" text NOT NULL,
	"input_from_seq" integer NOT NULL,
	"previous_response_id" text,
	"conversation_given" boolean NOT NULL,
	"request" json NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "conversations" ADD COLUMN "hidden" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "responses" ADD CONSTRAINT "responses_conversation_id_conversations_id_fk" FOREIGN KEY ("conversation_id") REFERENCES "public"."conversations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "responses_reply_id_idx" ON "responses" USING btree ("reply_id");--> statement-breakpoint
CREATE INDEX "responses_conversation_id_idx" ON "responses" USING btree ("conversation_id");