-- The transactional outbox: a service writes its state change and the event in one
-- transaction; the relay publishes unpublished rows in id order and marks them.
CREATE TABLE platform_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    subject      text        NOT NULL,
    event_type   text        NOT NULL,
    payload      bytea       NOT NULL,
    traceparent  text,
    tracestate   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX platform_outbox_unpublished ON platform_outbox (id) WHERE published_at IS NULL;
CREATE INDEX platform_outbox_published ON platform_outbox (published_at) WHERE published_at IS NOT NULL;

-- The inbox: the ids of the events a consumer has applied, written in the same
-- transaction as their effect, so that a redelivery is recognised and skipped.
CREATE TABLE platform_inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    subject      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
