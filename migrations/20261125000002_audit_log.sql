-- Who read protected data: one row per answered request (or opened stream) that returned rows
-- or events of a protected entity. Written by the server in batches; read by operators with
-- `fordeler audit` or plain SQL.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL,
    -- The credential's id (`apikey:<uuid>`, `jwt:<iss>/<sub>`), never its secret.
    credential text NOT NULL,
    register text NOT NULL,
    entity text NOT NULL,
    -- `rows` (an entity page), `events` (an events page), `subscribe` (a stream opened).
    operation text NOT NULL,
    -- Rows or events returned (0 for `subscribe`).
    rows bigint NOT NULL
);

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_credential ON audit_log (credential, at);
