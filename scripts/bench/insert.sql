-- pgbench twin of a pgchaos writer: one autocommitted insert with a random uuid and, like
-- pgchaos, a payload that is an md5 checksum.
\set seq random(1, 1000000000)
insert into pgchaos_ledger (id, run_id, writer, seq, payload)
  values (gen_random_uuid(), 'pgbench', :client_id, :seq, md5(:seq::text));
