"""The PostgreSQL schemas of a region's transfers and of the directory, as migrations.

A migration is the statements that upgrade a component's tables from the version before
it; ``schema_version`` records each component's version. Never change a released
migration: add the next one. The tables mirror SQLite's (:mod:`geodrop.metadata.sqlite`)
with PostgreSQL's types: times are epoch seconds in ``DOUBLE PRECISION``, sizes
``BIGINT``, JSON ``JSONB``, lists of receivers ``TEXT[]``.
"""

from __future__ import annotations

from typing import Final

Migration = tuple[str, ...]

TRANSFER_MIGRATIONS: Final[tuple[Migration, ...]] = (
    # 1: transfers, their deliveries, tombstones of retired ones, and the link figures
    # each access unit publishes.
    (
        """CREATE TABLE transfers (
            id TEXT PRIMARY KEY,
            sender TEXT NOT NULL,
            filename TEXT NOT NULL,
            size BIGINT NOT NULL,
            sha256 TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL,
            completed_at DOUBLE PRECISION,
            content_type TEXT NOT NULL,
            tus_metadata JSONB NOT NULL,
            downloads INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE deliveries (
            transfer_id TEXT NOT NULL REFERENCES transfers(id) ON DELETE CASCADE,
            receiver TEXT NOT NULL,
            position INTEGER NOT NULL,
            announced BOOLEAN NOT NULL DEFAULT FALSE,
            received_at DOUBLE PRECISION,
            PRIMARY KEY (transfer_id, receiver)
        )""",
        "CREATE INDEX transfers_expiry ON transfers (expires_at)",
        "CREATE INDEX transfers_sender ON transfers (sender, created_at)",
        "CREATE INDEX deliveries_unannounced ON deliveries (transfer_id) WHERE NOT announced",
        """CREATE TABLE tombstones (
            id TEXT PRIMARY KEY,
            sender TEXT NOT NULL,
            receivers TEXT[] NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expired_at DOUBLE PRECISION NOT NULL,
            inbox_pending BOOLEAN NOT NULL DEFAULT FALSE
        )""",
        "CREATE INDEX tombstones_expired ON tombstones (expired_at)",
        "CREATE INDEX tombstones_sender ON tombstones (sender, created_at)",
        "CREATE INDEX tombstones_inbox_pending ON tombstones (expired_at) WHERE inbox_pending",
        # Rewritten every few seconds by every access unit and worthless after a crash:
        # unlogged (no WAL, emptied by crash recovery).
        """CREATE UNLOGGED TABLE unit_link_loads (
            unit TEXT NOT NULL,
            link TEXT NOT NULL,
            active_transfers INTEGER NOT NULL,
            rate_bytes_per_second DOUBLE PRECISION NOT NULL,
            bytes_sent BIGINT NOT NULL,
            bytes_received BIGINT NOT NULL,
            published_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (unit, link)
        )""",
    ),
    # 2: each sender's bytes held, kept by a trigger, so a quota check reads one row
    # instead of summing every transfer the sender holds (a sender holding nothing has
    # no row).
    (
        """CREATE TABLE sender_bytes (
            sender TEXT PRIMARY KEY,
            bytes_held BIGINT NOT NULL
        )""",
        "INSERT INTO sender_bytes (sender, bytes_held)"
        " SELECT sender, SUM(size) FROM transfers GROUP BY sender",
        """CREATE FUNCTION sender_bytes_follow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                UPDATE sender_bytes SET bytes_held = bytes_held - OLD.size
                    WHERE sender = OLD.sender;
                DELETE FROM sender_bytes WHERE sender = OLD.sender AND bytes_held = 0;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                INSERT INTO sender_bytes (sender, bytes_held) VALUES (NEW.sender, NEW.size)
                    ON CONFLICT (sender) DO UPDATE
                    SET bytes_held = sender_bytes.bytes_held + EXCLUDED.bytes_held;
            END IF;
            RETURN NULL;
        END
        $$""",
        "CREATE TRIGGER transfers_sender_bytes"
        " AFTER INSERT OR DELETE OR UPDATE OF sender, size ON transfers"
        " FOR EACH ROW EXECUTE FUNCTION sender_bytes_follow()",
    ),
    # 3: each sender's uploads counted by the hour of their creation, kept by a trigger,
    # so a quota check counts whole hours of its window from at most 25 rows instead of
    # every upload the sender made in it (rows.usage_query). Retiring a transfer leaves
    # its count (its tombstone counted as an upload already); counts two days older
    # than the sender's newest upload go.
    (
        """CREATE TABLE sender_uploads (
            sender TEXT NOT NULL,
            hour BIGINT NOT NULL,
            uploads BIGINT NOT NULL,
            PRIMARY KEY (sender, hour)
        )""",
        "INSERT INTO sender_uploads (sender, hour, uploads)"
        " SELECT sender, floor(created_at / 3600)::BIGINT, COUNT(*) FROM"
        " (SELECT sender, created_at FROM transfers"
        "  UNION ALL SELECT sender, created_at FROM tombstones) AS uploads"
        " GROUP BY sender, floor(created_at / 3600)::BIGINT",
        """CREATE FUNCTION sender_uploads_count() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            bucket BIGINT := floor(NEW.created_at / 3600)::BIGINT;
        BEGIN
            INSERT INTO sender_uploads AS counted (sender, hour, uploads)
                VALUES (NEW.sender, bucket, 1)
                ON CONFLICT (sender, hour) DO UPDATE SET uploads = counted.uploads + 1;
            DELETE FROM sender_uploads AS stale
                WHERE stale.sender = NEW.sender AND stale.hour < bucket - 48;
            RETURN NULL;
        END
        $$""",
        "CREATE TRIGGER transfers_sender_uploads AFTER INSERT ON transfers"
        " FOR EACH ROW EXECUTE FUNCTION sender_uploads_count()",
    ),
)

INBOX_MIGRATIONS: Final[tuple[Migration, ...]] = (
    # 1: the inboxes, and every region's last heartbeat.
    (
        """CREATE TABLE inbox (
            cursor BIGSERIAL PRIMARY KEY,
            receiver TEXT NOT NULL,
            file_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            filename TEXT NOT NULL,
            size BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            region TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            UNIQUE (file_id, receiver)
        )""",
        "CREATE INDEX inbox_receiver ON inbox (receiver, cursor)",
        """CREATE TABLE region_heartbeats (
            region TEXT PRIMARY KEY,
            last_beat DOUBLE PRECISION NOT NULL,
            beats BIGINT NOT NULL,
            links JSONB NOT NULL
        )""",
    ),
)
