-- 0002: each server's library and rules: favourites (the anthology), moderator styles
-- and their defaults, server settings, and members' preferences.
--
-- Shipped: never edit this file; add 0003_*.sql instead. Conventions as in 0001 (INTEGER
-- snowflakes, fixed-width ISO UTC text timestamps, STRICT, per-server rows cascade from
-- guilds so purging a server stays one DELETE).

-- One member's star on one creation. Only a server's finished ('done') creations can be
-- starred (see the trigger below), never a direct message's.
CREATE TABLE favourites (
    guild_id   INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    request_id INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL,       -- who starred it
    created_at TEXT    NOT NULL,       -- when
    PRIMARY KEY (request_id, user_id)  -- also serves the cascade from requests
) STRICT;

-- A member's stars in a server: forgetting a member, and the cascade from guilds.
CREATE INDEX favourites_guild_user ON favourites (guild_id, user_id);

-- A star must stay inside its creation's server: a mismatched guild_id would show one
-- server's creation in another's anthology. Repositories check this too; the trigger
-- makes it hold for any writer (the sqlite3 shell, a future repository).
CREATE TRIGGER favourites_same_guild_done BEFORE INSERT ON favourites
WHEN NOT EXISTS (
    SELECT 1 FROM requests
    WHERE id = NEW.request_id AND guild_id = NEW.guild_id AND status = 'done'
)
BEGIN
    SELECT RAISE(ABORT, 'favourites: request is not a finished creation of that guild');
END;

CREATE TRIGGER favourites_keys_fixed BEFORE UPDATE OF guild_id, request_id ON favourites
BEGIN
    SELECT RAISE(ABORT, 'favourites: unstar and star again instead of moving a star');
END;

-- One row per starred creation: its star count and newest star, kept by the triggers
-- below. The anthology is ordered by newest star and the hall of fame by count; computing
-- those by GROUP BY would read every star of the server for every page, while these
-- indexes give any page, however deep (keyset), in a few index steps. author_id,
-- command, style and continuation are copies of the request's, which never change
-- (inputs are written once), so the filtered listings are index ranges too.
CREATE TABLE favourite_totals (
    request_id      INTEGER PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    guild_id        INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    author_id       INTEGER NOT NULL,
    command         TEXT    NOT NULL,
    style           TEXT,              -- inputs.style when it is text, else NULL
    continuation    INTEGER NOT NULL CHECK (continuation IN (0, 1)),  -- inputs.continue_of
    stars           INTEGER NOT NULL CHECK (stars > 0),  -- a creation with none has no row
    last_starred_at TEXT    NOT NULL
) STRICT;

-- Anthology (newest star first; keyset cursor (last_starred_at, request_id)), all of the
-- server, by member, by command. The first also serves the cascade from guilds.
CREATE INDEX favourite_totals_recent
    ON favourite_totals (guild_id, last_starred_at DESC, request_id DESC);
CREATE INDEX favourite_totals_author_recent
    ON favourite_totals (guild_id, author_id, last_starred_at DESC, request_id DESC);
CREATE INDEX favourite_totals_command_recent
    ON favourite_totals (guild_id, command, last_starred_at DESC, request_id DESC);
-- Hall of fame (most stars, ties newest creation first), all and by command. Both hold
-- request_id, so an OFFSET is skipped inside the index.
CREATE INDEX favourite_totals_fame
    ON favourite_totals (guild_id, stars DESC, request_id DESC);
CREATE INDEX favourite_totals_command_fame
    ON favourite_totals (guild_id, command, stars DESC, request_id DESC);
-- Community taste, read on every request where it is on: the best creations of one
-- command and style, never continuations (they only make sense after their parent).
CREATE INDEX favourite_totals_taste
    ON favourite_totals (guild_id, command, style, stars DESC, request_id DESC)
    WHERE continuation = 0;

-- Deleting a star by any path (unstar, forgetting a member, or the cascade when its
-- creation or server is deleted) fires these, so the totals cannot drift.
CREATE TRIGGER favourites_count_star AFTER INSERT ON favourites
BEGIN
    INSERT INTO favourite_totals (request_id, guild_id, author_id, command, style,
                                  continuation, stars, last_starred_at)
    SELECT NEW.request_id, NEW.guild_id, requests.user_id, requests.command,
           CASE json_type(requests.inputs, '$.style')
               WHEN 'text' THEN json_extract(requests.inputs, '$.style')
           END,
           json_extract(requests.inputs, '$.continue_of') IS NOT NULL,
           1, NEW.created_at
    FROM requests WHERE requests.id = NEW.request_id
    ON CONFLICT (request_id) DO UPDATE SET
        stars = stars + 1,
        last_starred_at = max(last_starred_at, excluded.last_starred_at);
END;

CREATE TRIGGER favourites_uncount_star AFTER DELETE ON favourites
BEGIN
    DELETE FROM favourite_totals WHERE request_id = OLD.request_id AND stars = 1;
    -- The newest remaining star: a few rows of this creation via the primary key.
    UPDATE favourite_totals SET
        stars = stars - 1,
        last_starred_at = (
            SELECT max(created_at) FROM favourites WHERE request_id = OLD.request_id
        )
    WHERE request_id = OLD.request_id;
END;

-- A server's own styles, and its overrides of the built-in ones (same name; disabled = 1
-- hides a built-in there). Built-ins themselves live in config/styles.toml, not here.
CREATE TABLE styles (
    guild_id     INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL
                         CHECK (length(name) BETWEEN 1 AND 32 AND name NOT GLOB '*[^a-z0-9-]*'),
    description  TEXT    NOT NULL,
    instructions TEXT    NOT NULL,
    example      TEXT,
    commands     TEXT    NOT NULL DEFAULT '[]'  -- empty: every creative command
                         CHECK (json_valid(commands) AND json_type(commands) = 'array'),
    mature       INTEGER NOT NULL DEFAULT 0 CHECK (mature IN (0, 1)),
    disabled     INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    updated_by   INTEGER,
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (guild_id, name)       -- listing a server's styles, and the cascade
) STRICT;

-- The style a command uses when the member picks none: per channel, or server-wide
-- (channel_id 0, since a NULL in a primary key would not be unique). No foreign key to
-- styles: a default may name a built-in, which has no row.
CREATE TABLE style_defaults (
    guild_id   INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    command    TEXT    NOT NULL CHECK (command <> ''),
    channel_id INTEGER NOT NULL CHECK (channel_id >= 0),
    style_name TEXT    NOT NULL CHECK (style_name <> ''),
    PRIMARY KEY (guild_id, command, channel_id)
) STRICT;

-- A server's settings as one JSON object of the values that differ from the defaults:
-- a new setting needs no migration, and a changed default reaches servers that never
-- set that value.
CREATE TABLE guild_settings (
    guild_id INTEGER PRIMARY KEY REFERENCES guilds (id) ON DELETE CASCADE,
    data     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data) AND json_type(data) = 'object')
) STRICT;

-- A member's choices in one server. NULL: never chosen (each reader has its default).
CREATE TABLE member_prefs (
    guild_id        INTEGER NOT NULL REFERENCES guilds (id) ON DELETE CASCADE,
    user_id         INTEGER NOT NULL,
    critique_opt_in INTEGER CHECK (critique_opt_in IN (0, 1)),
    PRIMARY KEY (guild_id, user_id)
) STRICT;

-- Limits checked on every request: a member's unfinished requests in a server (queued or
-- running means finished_at IS NULL, see 0001's CHECK). Partial, so it stays tiny.
CREATE INDEX requests_unfinished ON requests (guild_id, user_id, status)
    WHERE finished_at IS NULL;
