-- pgbench twin of a pgchaos reader: a primary-key existence probe.
-- md5() of a parameter is computed once per statement, so the primary key index is used.
\set r random(1, 1000000000)
select exists (select 1 from pgchaos_ledger where id = md5(:r::text)::uuid);
