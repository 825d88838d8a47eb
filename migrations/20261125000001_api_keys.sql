-- API keys for machine clients. Only a SHA-256 of each key's secret is stored: the key itself
-- is shown once, by `fordeler apikey create`, and cannot be recovered from the database.
CREATE TABLE api_keys (
    -- The public half of a key (`fordeler_<id>_<secret>`): finds the row.
    id uuid PRIMARY KEY,
    -- SHA-256 of the secret half.
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    -- Who it was issued to (free text: a system, a team).
    owner text NOT NULL CHECK (owner <> ''),
    -- What it may read, as `REGISTER:Entity` or `REGISTER:*` separated by spaces.
    grants text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Refused from this moment on (null: never expires).
    expires_at timestamptz,
    -- Refused from this moment on (null: not revoked).
    revoked_at timestamptz
);
