-- Core tables of fordeler. Entity tables (one per register entity, schema reg_<register>) and
-- the events partition of each register are derived from the register definitions at start-up
-- (src/store/schema.rs), not here: adding a register needs no migration.

-- One row per register. The row is also the import lock: an import takes it FOR UPDATE, so the
-- imports of one register are serialised and commit order equals eventid order (the gap-free
-- invariant). last_eventid is the counter events are numbered from; it only moves in the same
-- transaction that inserts the events, so a failed or killed import leaves no hole.
CREATE TABLE registers (
    register_id       smallint PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    -- The definition last synced, kept so an operator can see what the storage was derived from.
    definition        jsonb NOT NULL,
    definition_sha256 text NOT NULL,
    last_sequence     bigint NOT NULL DEFAULT 0,
    last_eventid      bigint NOT NULL DEFAULT 0,
    last_import_at    timestamptz,
    -- Live rows over all entity tables, maintained by imports so status needs no count(*).
    row_count         bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per imported package: re-deliveries are compared against sha256, and the row counts
-- and timings are the import's own record.
CREATE TABLE import_packages (
    register_id   smallint NOT NULL REFERENCES registers,
    sequence      bigint NOT NULL,
    sha256        text NOT NULL,
    file_name     text NOT NULL,
    -- The package header's creation time.
    created       timestamptz NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    rows_read     bigint NOT NULL,
    inserted      bigint NOT NULL,
    updated       bigint NOT NULL,
    deleted       bigint NOT NULL,
    unchanged     bigint NOT NULL,
    -- Events of the package are first_eventid..last_eventid (both null when it made none).
    first_eventid bigint,
    last_eventid  bigint,
    PRIMARY KEY (register_id, sequence)
);

-- Refused or failed import attempts, written after the import's transaction rolled back, so an
-- operator (and later RegisterImportStatus) can see why a register is not moving.
CREATE TABLE import_failures (
    id         bigserial PRIMARY KEY,
    register   text,
    sequence   bigint,
    file_name  text NOT NULL,
    kind       text NOT NULL,
    error      text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_failures_register ON import_failures (register, failed_at);

-- Events of all registers, one partition per register (events_<register>), so each register's
-- events are their own table and index: 100M+ events of one register do not slow another's
-- paging, and a register can be archived or dropped by its partition.
CREATE TABLE events (
    register_id                    smallint NOT NULL,
    eventid                        bigint NOT NULL,
    entityname                     text NOT NULL,
    eventaction                    text NOT NULL CHECK (eventaction IN ('i', 'u', 'd')),
    -- datafordelerRegisterImportSequenceNumber
    datafordeler_import_sequence   bigint NOT NULL,
    -- datafordelerOpdateringstid: when the event was written.
    datafordeler_opdateringstid    timestamptz NOT NULL,
    -- Always false: packages are atomic, a failed import publishes nothing (ARCHITECTURE.md).
    fromfailedimport               boolean NOT NULL DEFAULT false,
    object_id                      text,
    object_datafordeler_rowid      uuid NOT NULL,
    object_datafordeler_rowversion integer NOT NULL,
    object_registreringfra         timestamptz,
    object_registreringtil         timestamptz,
    object_status                  text,
    object_virkningfra             timestamptz,
    object_virkningtil             timestamptz,
    -- Register-specific extra event fields (CPR's object_kommunekode*), null when none.
    extra                          jsonb,
    -- Serves eventid > X paging per register.
    PRIMARY KEY (register_id, eventid)
) PARTITION BY LIST (register_id);

-- Serves event filters by entity (where: {entityname: {eq: ...}}) in eventid order.
CREATE INDEX events_entity ON events (register_id, entityname, eventid);
