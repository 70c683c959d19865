-- 0001: servers, and the generation requests every command creates.
--
-- Shipped: never edit this file; add 0002_*.sql instead.
--
-- Conventions for every table:
-- * Discord ids are INTEGER snowflakes (they fit SQLite's signed 64 bits).
-- * Timestamps are ISO-8601 UTC text, always with microseconds and "+00:00",
--   e.g. 2025-01-31T12:00:00.000000+00:00. One fixed width, so text order is time
--   order (range queries and indexes work), the sqlite3 shell shows them readably, and
--   SQLite's date functions understand them.
-- * STRICT tables, so a stray str id or float cannot slip in unnoticed.
-- * Per-server data references guilds(id) ON DELETE CASCADE: purging a server the bot
--   left is one DELETE FROM guilds, for this table and every later one.

CREATE TABLE guilds (
    id        INTEGER PRIMARY KEY,
    joined_at TEXT NOT NULL,           -- first seen (joined, or first request)
    left_at   TEXT                     -- NULL while the bot is a member
) STRICT;

-- Purging looks only at servers the bot has left.
CREATE INDEX guilds_left_at ON guilds (left_at) WHERE left_at IS NOT NULL;

-- One row per generation request: the "creation" that favourites, styles and games
-- will point at. AUTOINCREMENT so an id is never reused after rows are deleted
-- (forget_member, purge): a persistent button carrying "fav:<id>" must never come to
-- mean somebody else's newer creation.
CREATE TABLE requests (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id          INTEGER REFERENCES guilds (id) ON DELETE CASCADE,  -- NULL in DMs
    channel_id        INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    command           TEXT    NOT NULL CHECK (command <> ''),
    inputs            TEXT    NOT NULL DEFAULT '{}'
                              CHECK (json_valid(inputs) AND json_type(inputs) = 'object'),
    status            TEXT    NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'done', 'failed',
                                                'cancelled', 'timed_out')),
    output            TEXT,
    error             TEXT,
    created_at        TEXT    NOT NULL,
    started_at        TEXT,
    finished_at       TEXT,
    generated_tokens  INTEGER NOT NULL DEFAULT 0 CHECK (generated_tokens >= 0),
    first_token_ms    INTEGER CHECK (first_token_ms >= 0),
    -- Delivery, so an accepted job survives a restart and is answered exactly once.
    application_id    INTEGER,
    interaction_token TEXT,            -- credential, valid 15 min: cleared once used/expired
    message_id        INTEGER,         -- the reply message, once known
    delivered_at      TEXT,            -- set exactly once (conditional UPDATE)
    -- A terminal status and a finish time go together.
    CHECK ((status IN ('done', 'failed', 'cancelled', 'timed_out')) = (finished_at IS NOT NULL)),
    -- A delivered job keeps no credential around.
    CHECK (delivered_at IS NULL OR interaction_token IS NULL)
) STRICT;

-- Listing a server's creations newest first (keyset pagination on id), by member and
-- by command. The first also serves the ON DELETE CASCADE from guilds.
CREATE INDEX requests_guild         ON requests (guild_id, id DESC);
CREATE INDEX requests_guild_user    ON requests (guild_id, user_id, id DESC);
CREATE INDEX requests_guild_command ON requests (guild_id, command, id DESC);

-- Restart recovery: jobs accepted but not yet answered (queued, running, or finished
-- and undelivered). Partial, so it stays tiny however many requests are stored.
CREATE INDEX requests_undelivered ON requests (id) WHERE delivered_at IS NULL;
