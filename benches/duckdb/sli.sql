-- Causeway's SLIs (SPEC §2, §3) and service graph as DuckDB SQL, over the
-- flattened records the `duckdb_compare` harness writes (one JSON line per decoded
-- span, log record and audit record, with the partition `p` and message offset
-- `o` it came from). `run.py` substitutes the ${...} parameters and runs the
-- phases in order; each phase is timed.
--
-- Semantics (SPEC §2/§3 and ARCHITECTURE.md "Decisions"):
-- * event time t: span start, or its end when the start is 0; log/audit time.
-- * window: tumbling, epoch-aligned, ${window_s} s, the one holding t.
-- * late (SPEC §2, invariant 2): per partition, a record is late when t is below
--   (max event time of the partition's EARLIER messages) - allowed_lateness.
--   Late records count nowhere.
-- * identity: spans de-duplicated by (trace_id, span_id): greatest end, then
--   ERROR, then smallest service name, then the smallest record (Span's field
--   order: parent, start, kind, status, pii, environment, version).
-- * join rule: a span of trace T starts in [t - horizon, t + grace].
-- * parent resolution: the (deduplicated) span with the child's trace id and the
--   parent id, starting in [child start - horizon, child start + grace].

-- @phase load
-- Ids are parsed from hex into integers (absent: parent 0, trace NULL), so joins
-- and the tie-break compare numbers, as Causeway does.
CREATE TABLE span_in AS
SELECT p, o, ('0x' || trace_id)::UHUGEINT AS trace_id, ('0x' || span_id)::UBIGINT AS span_id,
       CASE WHEN parent_span_id = '' THEN 0::UBIGINT
            ELSE ('0x' || parent_span_id)::UBIGINT END AS parent_span_id,
       start_ns, end_ns, kind, status, pii, service, environment, version
FROM read_json('${data}/spans.jsonl', format = 'newline_delimited', columns = {
    p: 'INTEGER', o: 'BIGINT', trace_id: 'VARCHAR', span_id: 'VARCHAR',
    parent_span_id: 'VARCHAR', start_ns: 'BIGINT', end_ns: 'BIGINT', kind: 'UTINYINT',
    status: 'UTINYINT', pii: 'BOOLEAN', service: 'VARCHAR', environment: 'VARCHAR',
    version: 'VARCHAR'});
CREATE TABLE log_in AS
SELECT * REPLACE (CASE WHEN trace_id = '' THEN NULL ELSE ('0x' || trace_id)::UHUGEINT END AS trace_id)
FROM read_json('${data}/logs.jsonl', format = 'newline_delimited', columns = {
    p: 'INTEGER', o: 'BIGINT', trace_id: 'VARCHAR', time_ns: 'BIGINT', severity: 'INTEGER',
    request: 'BOOLEAN', error_request: 'BOOLEAN', pii: 'BOOLEAN', service: 'VARCHAR',
    environment: 'VARCHAR', version: 'VARCHAR'});
CREATE TABLE audit_in AS
SELECT * REPLACE (CASE WHEN trace_id = '' THEN NULL ELSE ('0x' || trace_id)::UHUGEINT END AS trace_id)
FROM read_json('${data}/audit.jsonl', format = 'newline_delimited', columns = {
    p: 'INTEGER', o: 'BIGINT', trace_id: 'VARCHAR', time_ns: 'BIGINT', service: 'VARCHAR',
    environment: 'VARCHAR', version: 'VARCHAR'});

-- @phase late
-- Partitions are numbered globally (one per input file), so the three topics
-- share one watermark table.
CREATE TABLE msg_seen AS
WITH msg AS (
    SELECT p, o, max(CASE WHEN start_ns > 0 THEN start_ns ELSE end_ns END) AS mt
    FROM span_in GROUP BY p, o
    UNION ALL SELECT p, o, max(time_ns) FROM log_in GROUP BY p, o
    UNION ALL SELECT p, o, max(time_ns) FROM audit_in GROUP BY p, o)
SELECT p, o, max(mt) OVER (PARTITION BY p ORDER BY o
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS seen
FROM msg;

CREATE TABLE span_acc AS
SELECT s.*, CASE WHEN s.start_ns > 0 THEN s.start_ns ELSE s.end_ns END AS t
FROM span_in s JOIN msg_seen m USING (p, o)
WHERE m.seen IS NULL
   OR CASE WHEN s.start_ns > 0 THEN s.start_ns ELSE s.end_ns END >= m.seen - ${lateness_ns};
CREATE TABLE logs AS
SELECT l.*, l.time_ns AS t FROM log_in l JOIN msg_seen m USING (p, o)
WHERE m.seen IS NULL OR l.time_ns >= m.seen - ${lateness_ns};
CREATE TABLE audits AS
SELECT a.*, a.time_ns AS t FROM audit_in a JOIN msg_seen m USING (p, o)
WHERE m.seen IS NULL OR a.time_ns >= m.seen - ${lateness_ns};

-- @phase dedup
CREATE TABLE spans AS
SELECT * FROM span_acc
QUALIFY row_number() OVER (
    PARTITION BY trace_id, span_id
    ORDER BY end_ns DESC, (status = 2) DESC, service, parent_span_id, start_ns, kind,
             status, pii, environment, version) = 1;

-- @phase parents
-- At most one parent matches: spans are unique by (trace_id, span_id).
CREATE TABLE sp AS
SELECT c.*,
       (c.t // 1000000000) - (c.t // 1000000000) % ${window_s} AS w,
       par.span_id IS NOT NULL AS resolved,
       par.start_ns AS p_start, par.status AS p_status, par.service AS p_service,
       c.kind IN (2, 5) OR c.parent_span_id = 0 AS entry
FROM spans c
LEFT JOIN spans par
  ON par.trace_id = c.trace_id AND par.span_id = c.parent_span_id
 AND par.start_ns BETWEEN c.start_ns - ${horizon_ns} AND c.start_ns + ${grace_ns};

-- @phase joins
-- The join rule for log and audit records, against the deduplicated spans.
CREATE TABLE lj AS
SELECT l.*,
       (l.t // 1000000000) - (l.t // 1000000000) % ${window_s} AS w,
       EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = l.trace_id
                 AND s.start_ns BETWEEN l.t - ${horizon_ns} AND l.t + ${grace_ns}) AS joined_any,
       EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = l.trace_id AND s.service = l.service
                 AND s.start_ns BETWEEN l.t - ${horizon_ns} AND l.t + ${grace_ns}) AS joined_same
FROM logs l;
CREATE TABLE aj AS
SELECT a.*,
       (a.t // 1000000000) - (a.t // 1000000000) % ${window_s} AS w,
       EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = a.trace_id
                 AND s.start_ns BETWEEN a.t - ${horizon_ns} AND a.t + ${grace_ns}) AS joined_any
FROM audits a;

-- @phase slis
-- Ratio SLIs as (good, total) contributions, summed per key; a key with no
-- event of an SLI's population has no row (SPEC: no record).
CREATE TABLE ratio AS
WITH span_counts AS (
    SELECT service, environment, version, w,
           count(*) AS n,
           count_if(start_ns > 0 AND end_ns >= start_ns
                    AND end_ns - start_ns <= ${max_span_duration_ns}
                    AND NOT (resolved AND p_start > start_ns + ${skew_ns})) AS m3,
           count_if(parent_span_id = 0 OR resolved) AS m4,
           count_if(NOT pii) AS m9,
           count_if(entry) AS r1_total,
           count_if(entry AND status <> 2) AS r1_good
    FROM sp GROUP BY ALL),
log_counts AS (
    SELECT service, environment, version, w,
           count(*) AS n,
           count_if(NOT pii) AS m9,
           count_if(request) AS m1_total,
           count_if(request AND joined_same) AS m1_good,
           count_if(severity >= 17) AS m2_total,
           count_if(severity >= 17 AND joined_any) AS m2_good
    FROM lj GROUP BY ALL),
parts AS (
    SELECT 'latency_capture' AS sli, service, environment, version, w, m3 AS good, n AS total FROM span_counts
    UNION ALL SELECT 'context_loss', service, environment, version, w, m4, n FROM span_counts
    UNION ALL SELECT 'sensitive_exposure', service, environment, version, w, m9, n FROM span_counts
    UNION ALL SELECT 'availability', service, environment, version, w, r1_good, r1_total FROM span_counts
    UNION ALL SELECT 'sensitive_exposure', service, environment, version, w, m9, n FROM log_counts
    UNION ALL SELECT 'trace_coverage', service, environment, version, w, m1_good, m1_total FROM log_counts
    UNION ALL SELECT 'error_trace_ratio', service, environment, version, w, m2_good, m2_total FROM log_counts
    UNION ALL SELECT 'provenance_completeness', service, environment, version, w,
                     count_if(joined_any), count(*) FROM aj GROUP BY ALL)
SELECT sli, service, environment, version, w AS window_start,
       sum(good)::BIGINT AS good, sum(total)::BIGINT AS total
FROM parts GROUP BY ALL HAVING sum(total) > 0;

-- R2: entry-span durations in microseconds (0 when end < start); the exact
-- k-th smallest, k = max(1, ceil(q * n)) in binary64, which is the rank
-- hdrhistogram's value_at_quantile looks up (the harness then checks that
-- Causeway reports that value's HDR bucket, i.e. within 3 significant digits).
CREATE TABLE latency AS
WITH l AS (
    SELECT service, environment, version, w, count(*) AS n, list(us ORDER BY us) AS d
    FROM (SELECT service, environment, version, w,
                 CASE WHEN end_ns > start_ns THEN (end_ns - start_ns) // 1000 ELSE 0 END AS us
          FROM sp WHERE entry)
    GROUP BY ALL)
SELECT 'latency' AS sli, service, environment, version, w AS window_start, n AS total,
       d[greatest(1, ceil(0.5::DOUBLE * n::DOUBLE))::BIGINT] AS p50_us,
       d[greatest(1, ceil(0.9::DOUBLE * n::DOUBLE))::BIGINT] AS p90_us,
       d[greatest(1, ceil(0.99::DOUBLE * n::DOUBLE))::BIGINT] AS p99_us
FROM l;

-- M10: written only when both shares are defined.
CREATE TABLE sampling AS
WITH c AS (
    SELECT service, environment, version, w,
           count(*) AS req,
           count_if(error_request) AS err,
           count_if(joined_same) AS tr,
           count_if(joined_same AND error_request) AS tr_err
    FROM lj WHERE request GROUP BY ALL)
SELECT 'sampling_bias' AS sli, service, environment, version, w AS window_start,
       abs(err::DOUBLE / req::DOUBLE - tr_err::DOUBLE / tr::DOUBLE) AS value,
       req AS requests, err AS error_requests, tr AS traced_requests,
       tr_err AS traced_error_requests
FROM c WHERE req > 0 AND tr > 0;

-- Service graph: parent -> child in different services, in the child's window;
-- failed when either span is ERROR.
CREATE TABLE edges AS
SELECT p_service AS client, service AS server, w AS window_start,
       count(*) AS total, count_if(status = 2 OR p_status = 2) AS failed
FROM sp WHERE resolved AND p_service <> service GROUP BY ALL;

-- @phase write
COPY ratio TO '${out}/ratio.jsonl' (FORMAT JSON);
COPY latency TO '${out}/latency.jsonl' (FORMAT JSON);
COPY sampling TO '${out}/sampling.jsonl' (FORMAT JSON);
COPY edges TO '${out}/edges.jsonl' (FORMAT JSON);
COPY (SELECT (SELECT count(*) FROM span_in) AS spans_read,
             (SELECT count(*) FROM span_acc) AS spans_accepted,
             (SELECT count(*) FROM spans) AS spans_unique,
             (SELECT count(*) FROM log_in) AS logs_read,
             (SELECT count(*) FROM logs) AS logs_accepted,
             (SELECT count(*) FROM audit_in) AS audits_read,
             (SELECT count(*) FROM audits) AS audits_accepted)
  TO '${out}/counts.json' (FORMAT JSON);
