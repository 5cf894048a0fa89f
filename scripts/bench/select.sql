-- pgbench twin of a pgchaos reader: one statement saying whether the server is a replica,
-- its WAL position, and the newest row of each writer it can see (the index on
-- (run_id, writer, seq) makes each a short backward index scan).
select pg_is_in_recovery(),
       (case when pg_is_in_recovery() then pg_last_wal_replay_lsn()
             else pg_current_wal_lsn() end)::text,
       array(select coalesce((select max(seq) from pgchaos_ledger
                              where run_id = 'pgbench' and writer = w), 0)
             from generate_series(0, :writers - 1) w order by w);
