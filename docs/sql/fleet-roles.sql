-- Least-privilege roles for csc fleet mode (RFC 0014, docs/deployment-modes.md).
-- Run as the database owner AFTER `csc state migrate` (which the owner or a
-- csc_admin role runs). Runners may INSERT and SELECT, never UPDATE,
-- DELETE or TRUNCATE: a compromised runner cannot rewrite the ledger or
-- un-consume an approval. Replace the role names and add LOGIN/passwords
-- (or certificate authentication) to suit your site.
CREATE ROLE csc_runner NOLOGIN;
GRANT SELECT ON csc_schema, csc_store_meta TO csc_runner;
GRANT SELECT, INSERT ON csc_consumed_approvals, csc_ledger_entries, csc_ledger_checkpoints TO csc_runner;
GRANT USAGE ON SEQUENCE csc_ledger_checkpoints_seq_seq TO csc_runner;
-- Schema 2: one function per hot operation. They run with the caller's
-- privileges (SECURITY INVOKER), so EXECUTE grants nothing beyond the above.
GRANT EXECUTE ON FUNCTION csc_check_schema(integer),
    csc_consume(integer, text[], text, text, text),
    csc_append(integer, bytea, bytea, text) TO csc_runner;
-- No temporary tables and no objects of their own: behind a transaction-
-- pooling pooler, server sessions are shared, and a temporary table (or a
-- function in a schema earlier in search_path) left in one could stand in
-- for csc's in another client's calls. Schema 3 pins the functions'
-- search_path to csc's schema too; this takes the tools away as well.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END $$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- Auditors read everything and write nothing.
CREATE ROLE csc_auditor NOLOGIN;
GRANT SELECT ON csc_schema, csc_store_meta, csc_consumed_approvals, csc_ledger_entries, csc_ledger_checkpoints TO csc_auditor;
GRANT EXECUTE ON FUNCTION csc_check_schema(integer) TO csc_auditor;
