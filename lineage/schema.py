"""Catalog schema: numbered migrations, applied in order, recorded in `ftbridge_meta`."""

from __future__ import annotations

SCHEMA_VERSION = 8

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS ftbridge_meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS conversions (
            conversion_id VARCHAR PRIMARY KEY,
            name VARCHAR,
            created_at TIMESTAMPTZ NOT NULL,
            status VARCHAR NOT NULL,            -- active | released | failed
            plan_text VARCHAR,
            plan_hash VARCHAR,
            schema_b64 VARCHAR NOT NULL,        -- Arrow IPC schema, base64
            storage_level VARCHAR,
            spill_root VARCHAR NOT NULL,
            node_local BOOLEAN NOT NULL,
            app_id VARCHAR,
            spark_version VARCHAR,
            num_partitions INTEGER NOT NULL,
            total_rows BIGINT NOT NULL,
            total_bytes BIGINT NOT NULL,
            recipe VARCHAR,
            allow_nondeterministic BOOLEAN NOT NULL DEFAULT FALSE,
            driver_host VARCHAR,
            driver_pid INTEGER,
            released_at TIMESTAMPTZ
        )""",
        """CREATE TABLE IF NOT EXISTS partitions (
            conversion_id VARCHAR NOT NULL,
            partition_id INTEGER NOT NULL,
            path VARCHAR NOT NULL,
            node_id VARCHAR,
            num_rows BIGINT NOT NULL,
            num_bytes BIGINT NOT NULL,
            checksum VARCHAR NOT NULL,
            state VARCHAR NOT NULL,             -- healthy | missing | corrupt | lost | released
            rebuilt_count INTEGER NOT NULL DEFAULT 0,
            updated_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (conversion_id, partition_id)
        )""",
        """CREATE TABLE IF NOT EXISTS events (
            event_id VARCHAR PRIMARY KEY,       -- made by the caller, so retried writes are idempotent
            conversion_id VARCHAR NOT NULL,
            partition_id INTEGER,
            kind VARCHAR NOT NULL,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ NOT NULL,
            duration_s DOUBLE NOT NULL,
            node_id VARCHAR,
            source VARCHAR,
            detail VARCHAR
        )""",
        """CREATE INDEX IF NOT EXISTS events_by_conversion ON events (conversion_id, started_at)""",
    ],
    2: [
        # How the spill files were made (format + the Spark settings that decide their bytes),
        # as JSON; NULL for conversions recorded before: Arrow IPC files written by mapInArrow.
        """ALTER TABLE conversions ADD COLUMN IF NOT EXISTS spill_format VARCHAR""",
    ],
    3: [
        # spark_to_ray (from_spark_recoverable) or ray_to_spark (to_spark: staged blocks).
        """ALTER TABLE conversions ADD COLUMN IF NOT EXISTS direction VARCHAR DEFAULT 'spark_to_ray'""",
    ],
    4: [
        # Spill roots are recorded without credentials since this version; scrub older rows
        # (user:secret@ and query parameters that look like secrets).
        r"""UPDATE conversions SET spill_root = regexp_replace(regexp_replace(spill_root,
            '://[^/@?]*@', '://'),
            '([?&])[A-Za-z_]*(key|secret|token|password|credential|signature|sig)[A-Za-z_]*=[^&]*', '\1', 'gi')
            WHERE spill_root LIKE '%://%'""",
    ],
    5: [
        # Training runs that read conversions (fit_on_spark or a RunRecorder callback).
        """CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,         -- ftbridge's id (the driver makes it)
            name VARCHAR,                       -- Ray Train's run (experiment) name
            ray_run_id VARCHAR,                 -- Ray Train's own run id, once its controller reports
            trainer VARCHAR,
            started_at TIMESTAMPTZ NOT NULL,
            finished_at TIMESTAMPTZ,
            status VARCHAR NOT NULL,            -- running | finished | failed
            storage_path VARCHAR,
            error VARCHAR,
            driver_host VARCHAR,
            driver_pid INTEGER
        )""",
        """CREATE TABLE IF NOT EXISTS run_inputs (
            run_id VARCHAR NOT NULL,
            dataset VARCHAR NOT NULL,           -- the trainer's dataset name ("train", ...)
            conversion_id VARCHAR NOT NULL,
            PRIMARY KEY (run_id, dataset)
        )""",
        """CREATE TABLE IF NOT EXISTS run_events (
            event_id VARCHAR PRIMARY KEY,       -- made by the caller: retried writes are idempotent
            run_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,              -- started | report | worker_failed | finished | failed (| resumed: v8)
            happened_at TIMESTAMPTZ NOT NULL,
            epoch INTEGER,                      -- the reported metrics' "epoch", if any
            checkpoint VARCHAR,                 -- the checkpoint's path, if the report carried one
            detail VARCHAR
        )""",
        """CREATE INDEX IF NOT EXISTS run_events_by_run ON run_events (run_id, happened_at)""",
    ],
    6: [
        # Files that are no partition's recorded copy any more but may still be on a host: a copy
        # superseded by a rebuild or a restage elsewhere, or a file `release` could not delete
        # because its host was down. `gc` deletes them on their host and drops the row.
        """CREATE TABLE IF NOT EXISTS leftover_files (
            path VARCHAR PRIMARY KEY,
            conversion_id VARCHAR NOT NULL,
            partition_id INTEGER,
            node_id VARCHAR,                    -- the Ray node that wrote it
            host VARCHAR,                       -- that node's IP address, once known
            reason VARCHAR NOT NULL,            -- superseded | host_down
            recorded_at TIMESTAMPTZ NOT NULL
        )""",
    ],
    7: [
        # What identifies a conversion's data, as JSON: the hash of its analyzed plan and its input
        # files (name, size, modification time); set by from_spark_recoverable(reuse=True), which
        # serves the files of an active conversion with the same key instead of converting again.
        """ALTER TABLE conversions ADD COLUMN IF NOT EXISTS reuse_key VARCHAR""",
    ],
    8: [
        # Mid-epoch resume: how far into its epoch a report's checkpoint was (0..1), and for a
        # `resumed` event where the restarted attempt went on and the seconds it cost.
        """ALTER TABLE run_events ADD COLUMN IF NOT EXISTS position DOUBLE""",
        """ALTER TABLE run_events ADD COLUMN IF NOT EXISTS lost_s DOUBLE""",
    ],
}

REQUIRED_TABLES = ("ftbridge_meta", "conversions", "partitions", "events", "runs", "run_inputs", "run_events",
                   "leftover_files")
