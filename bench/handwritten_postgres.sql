-- The benchmark project's KPIs, hand-written for PostgreSQL: bench/handwritten.sql's
-- tricks in PostgreSQL's SQL, computing the same values as `kpimetrics run` into
-- bench.hand_values (name, grain, period_start, dimension, dimension_value, value).
--
--   * every additive measure comes from ONE pre-aggregate of orders at (day, region,
--     channel), rolled up to days, weeks, months, slices and the trailing window;
--   * non-additive measures (count distinct, quantiles, medians) read the rows once per
--     grouping they need;
--   * year-to-date distinct customers count each customer in the first month they
--     ordered in the year (a running sum of first orders).
-- Run in one session (bench/postgres.py): the temporary tables live in it. CREATE TABLE
-- AS may use parallel workers (an INSERT ... SELECT may not); the temporary tables are
-- ANALYZEd, as a careful engineer does, since autovacuum never sees them. JIT is off, as
-- in kpimetrics' own session (kpimetrics/adapters/postgres.py): it compiles for seconds
-- to run each expression over a few million rows once. orders.ordered_at and
-- support_tickets.opened_at have a BRIN index (bench/postgres.py INDEXES), the same for
-- both sides; a full recompute reads every row, so the planner leaves it unused here.

SET jit = off;
CREATE SCHEMA IF NOT EXISTS bench;

-- 1. orders: additive pre-aggregate (one pass) --------------------------------------
DROP TABLE IF EXISTS o_day;
CREATE TEMP TABLE o_day AS
SELECT
    CAST(ordered_at AS DATE) AS d,
    coalesce(region, '(null)') AS region,
    coalesce(channel, '(null)') AS channel,
    count(*) AS n,
    count(*) FILTER (WHERE status = 'completed') AS n_completed,
    count(*) FILTER (WHERE status = 'returned') AS n_returned,
    sum(amount - discount) FILTER (WHERE status = 'completed') AS net,
    sum(amount) FILTER (WHERE status = 'completed') AS amount_completed
FROM orders
WHERE ordered_at IS NOT NULL
GROUP BY 1, 2, 3;
ANALYZE o_day;

DROP TABLE IF EXISTS o_add;
CREATE TEMP TABLE o_add AS
SELECT
    g AS grain, p AS period_start,
    CASE WHEN grouping(region) = 0 THEN 'region' WHEN grouping(channel) = 0 THEN 'channel' ELSE '' END AS dimension,
    coalesce(region, channel) AS dimension_value,
    sum(n) AS n, sum(n_completed) AS n_completed, sum(n_returned) AS n_returned,
    sum(net) AS net, sum(amount_completed) AS amount_completed
FROM (
    SELECT 'day' AS g, d AS p, o_day.* FROM o_day
    UNION ALL SELECT 'week', CAST(date_trunc('week', d) AS DATE), o_day.* FROM o_day
    UNION ALL SELECT 'month', CAST(date_trunc('month', d) AS DATE), o_day.* FROM o_day
) AS x
GROUP BY GROUPING SETS ((g, p), (g, p, region), (g, p, channel));
ANALYZE o_add;

-- 2. orders: non-additive measures (rows) -------------------------------------------
DROP TABLE IF EXISTS o_month;
CREATE TEMP TABLE o_month AS
SELECT
    CAST(date_trunc('month', ordered_at) AS DATE) AS m,
    count(DISTINCT customer_id) AS customers,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY amount) AS p90,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY discount) FILTER (WHERE discount > 0) AS median_discount,
    count(*) FILTER (WHERE discount > 0) AS n_discounted
FROM orders
WHERE ordered_at IS NOT NULL
GROUP BY 1;

DROP TABLE IF EXISTS o_month_region;
CREATE TEMP TABLE o_month_region AS
SELECT
    CAST(date_trunc('month', ordered_at) AS DATE) AS m,
    coalesce(region, '(null)') AS region,
    count(DISTINCT customer_id) AS customers
FROM orders
WHERE ordered_at IS NOT NULL
GROUP BY 1, 2;

-- year to date: each customer counts from the first month they ordered in the year
DROP TABLE IF EXISTS o_ytd;
CREATE TEMP TABLE o_ytd AS
WITH firsts AS (
    SELECT min(CAST(date_trunc('month', ordered_at) AS DATE)) AS m
    FROM orders
    WHERE ordered_at IS NOT NULL
    GROUP BY customer_id, extract(year FROM ordered_at)
), new_customers AS (
    SELECT m, count(*) AS n FROM firsts GROUP BY m
)
SELECT s.m, sum(coalesce(nc.n, 0)) OVER (PARTITION BY extract(year FROM s.m) ORDER BY s.m) AS customers
FROM o_month AS s LEFT JOIN new_customers AS nc USING (m);

-- through the model: orders joined to customers
DROP TABLE IF EXISTS seg;
CREATE TEMP TABLE seg AS
SELECT
    CAST(date_trunc('month', o.ordered_at) AS DATE) AS m,
    CASE WHEN grouping(c.segment) = 0 THEN 'segment' ELSE '' END AS dimension,
    CASE WHEN grouping(c.segment) = 0 THEN coalesce(c.segment, '(null)') END AS dimension_value,
    sum(o.amount) AS amount
FROM orders AS o
LEFT JOIN customers AS c ON c.customer_id = o.customer_id
WHERE o.ordered_at IS NOT NULL
GROUP BY GROUPING SETS ((1), (1, c.segment));

-- 3. support tickets ------------------------------------------------------------------
DROP TABLE IF EXISTS t_day;
CREATE TEMP TABLE t_day AS
SELECT
    CAST(opened_at AS DATE) AS d,
    coalesce(channel, '(null)') AS channel,
    count(*) AS n,
    count(*) FILTER (WHERE csat >= 4) AS n_satisfied,
    count(csat) AS n_rated
FROM support_tickets
WHERE opened_at IS NOT NULL
GROUP BY 1, 2;
ANALYZE t_day;

DROP TABLE IF EXISTS t_add;
CREATE TEMP TABLE t_add AS
SELECT
    g AS grain, p AS period_start,
    CASE WHEN grouping(channel) = 0 THEN 'channel' ELSE '' END AS dimension,
    CASE WHEN grouping(channel) = 0 THEN channel END AS dimension_value,
    sum(n) AS n, sum(n_satisfied) AS n_satisfied, sum(n_rated) AS n_rated
FROM (
    SELECT 'week' AS g, CAST(date_trunc('week', d) AS DATE) AS p, t_day.* FROM t_day
    UNION ALL SELECT 'month', CAST(date_trunc('month', d) AS DATE), t_day.* FROM t_day
) AS x
GROUP BY GROUPING SETS ((g, p), (g, p, channel));

DROP TABLE IF EXISTS t_month;
CREATE TEMP TABLE t_month AS
SELECT CAST(date_trunc('month', opened_at) AS DATE) AS m,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY first_response_seconds) AS p90
FROM support_tickets
WHERE opened_at IS NOT NULL
GROUP BY 1;

-- 4. every KPI's rows ---------------------------------------------------------------
DROP TABLE IF EXISTS bench.hand_values;
CREATE TABLE bench.hand_values AS
WITH net_revenue AS (
    SELECT 'net_revenue' AS name, grain, period_start, dimension, dimension_value, CAST(net AS DOUBLE PRECISION) AS value
    FROM o_add WHERE grain IN ('day', 'month')
), orders AS (
    SELECT 'orders', grain, period_start, dimension, dimension_value, CAST(n AS DOUBLE PRECISION)
    FROM o_add WHERE grain IN ('week', 'month') AND dimension IN ('', 'channel')
), tickets AS (
    SELECT 'tickets', 'month', period_start, '', NULL, CAST(n AS DOUBLE PRECISION)
    FROM t_add WHERE grain = 'month' AND dimension = ''
)
SELECT * FROM net_revenue
UNION ALL SELECT * FROM orders
UNION ALL SELECT * FROM tickets
UNION ALL
SELECT 'avg_order_value', 'month', period_start, '', NULL,
       CAST(amount_completed AS DOUBLE PRECISION) / nullif(CAST(n_completed AS DOUBLE PRECISION), 0)
FROM o_add WHERE grain = 'month' AND dimension = ''
UNION ALL
SELECT 'return_rate', 'month', period_start, dimension, dimension_value,
       CAST(n_returned AS DOUBLE PRECISION) / nullif(CAST(n AS DOUBLE PRECISION), 0)
FROM o_add WHERE grain = 'month' AND dimension IN ('', 'channel')
UNION ALL
SELECT 'revenue_trailing_3m', 'month', period_start, '', NULL,
       CAST(sum(net) OVER (ORDER BY period_start RANGE BETWEEN INTERVAL '2 months' PRECEDING AND CURRENT ROW)
            AS DOUBLE PRECISION)
FROM o_add WHERE grain = 'month' AND dimension = ''
UNION ALL
SELECT 'active_customers', 'month', m, '', NULL, CAST(customers AS DOUBLE PRECISION) FROM o_month
UNION ALL
SELECT 'active_customers', 'month', m, 'region', region, CAST(customers AS DOUBLE PRECISION) FROM o_month_region
UNION ALL
SELECT 'order_value_p90', 'month', m, '', NULL, CAST(p90 AS DOUBLE PRECISION) FROM o_month
UNION ALL
SELECT 'median_discount', 'month', m, '', NULL,
       CASE WHEN n_discounted > 0 THEN CAST(median_discount AS DOUBLE PRECISION) END FROM o_month
UNION ALL
SELECT 'customers_ytd', 'month', m, '', NULL, CAST(customers AS DOUBLE PRECISION) FROM o_ytd
UNION ALL
SELECT 'segment_revenue', 'month', m, dimension, dimension_value, CAST(amount AS DOUBLE PRECISION) FROM seg
UNION ALL
SELECT 'csat', grain, period_start, dimension, dimension_value,
       CAST(n_satisfied AS DOUBLE PRECISION) / nullif(CAST(n_rated AS DOUBLE PRECISION), 0)
FROM t_add
UNION ALL
SELECT 'first_response_p90', 'month', m, '', NULL, CAST(p90 AS DOUBLE PRECISION) FROM t_month
UNION ALL
-- derived: this month's net revenue against the previous calendar month's, per slice
SELECT 'revenue_growth', 'month', cur.period_start, cur.dimension, cur.dimension_value,
       CAST(cur.net AS DOUBLE PRECISION) / nullif(CAST(prev.net AS DOUBLE PRECISION), 0) - 1
FROM o_add AS cur
LEFT JOIN o_add AS prev
    ON prev.grain = 'month' AND prev.period_start = CAST(cur.period_start - INTERVAL '1 month' AS DATE)
   AND prev.dimension = cur.dimension AND prev.dimension_value IS NOT DISTINCT FROM cur.dimension_value
WHERE cur.grain = 'month'
UNION ALL
SELECT 'tickets_per_order', 'month', t.period_start, '', NULL,
       CAST(t.n AS DOUBLE PRECISION) / nullif(CAST(o.n AS DOUBLE PRECISION), 0)
FROM t_add AS t
JOIN o_add AS o ON o.grain = 'month' AND o.dimension = '' AND o.period_start = t.period_start
WHERE t.grain = 'month' AND t.dimension = '';
