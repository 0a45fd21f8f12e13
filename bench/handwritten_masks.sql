-- bench/handwritten.sql with its distinct counts written as kpimetrics now writes them on DuckDB: a bit mask
-- of each customer's months (bit i: the i-th month from January 2023; the data's 37 months fit one BIGINT),
-- OR-ed per customer and region, then each month's bit counted (see the README, "Count distinct from bit
-- masks"). It computes the same values as bench/handwritten.sql, which stays the benchmark's baseline; this
-- script measures what kpimetrics' own cost is against a hand-written script that knows the same trick:
--     .venv/bin/python bench/run.py --handwritten bench/handwritten_masks.sql
-- It relies on the data starting in January 2023 and spanning fewer than 63 months (the generator's does).

CREATE SCHEMA IF NOT EXISTS bench;

-- 1. orders: additive pre-aggregate (one pass) --------------------------------------
CREATE OR REPLACE TEMP TABLE o_day AS
SELECT
    CAST(ordered_at AS DATE) AS d,
    coalesce(CAST(region AS VARCHAR), '(null)') AS region,
    coalesce(CAST(channel AS VARCHAR), '(null)') AS channel,
    count(*) AS n,
    count(*) FILTER (WHERE status = 'completed') AS n_completed,
    count(*) FILTER (WHERE status = 'returned') AS n_returned,
    sum(amount - discount) FILTER (WHERE status = 'completed') AS net,
    sum(amount) FILTER (WHERE status = 'completed') AS amount_completed
FROM main.orders
WHERE ordered_at IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE o_add AS
SELECT
    g AS grain, p AS period_start,
    CASE WHEN grouping(region) = 0 THEN 'region' WHEN grouping(channel) = 0 THEN 'channel' ELSE '' END AS dimension,
    coalesce(region, channel) AS dimension_value,
    sum(n) AS n, sum(n_completed) AS n_completed, sum(n_returned) AS n_returned,
    sum(net) AS net, sum(amount_completed) AS amount_completed
FROM (
    SELECT 'day' AS g, d AS p, * FROM o_day
    UNION ALL SELECT 'week', CAST(date_trunc('week', d) AS DATE), * FROM o_day
    UNION ALL SELECT 'month', CAST(date_trunc('month', d) AS DATE), * FROM o_day
)
GROUP BY GROUPING SETS ((g, p), (g, p, region), (g, p, channel));

-- 2. orders: non-additive measures (rows) -------------------------------------------
-- each customer's months, by region, as the bits of one BIGINT
CREATE OR REPLACE TEMP TABLE o_customer_region AS
SELECT
    customer_id,
    coalesce(CAST(region AS VARCHAR), '(null)') AS region,
    bit_or(CAST(1 AS BIGINT) << date_diff('month', DATE '2023-01-01', ordered_at)) AS months
FROM main.orders
WHERE ordered_at IS NOT NULL AND customer_id IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE o_month_region AS
SELECT CAST(DATE '2023-01-01' + to_months(CAST(i AS INTEGER)) AS DATE) AS m, region, count(*) AS customers
FROM o_customer_region, range(0, 63) AS t(i)
WHERE (months >> i) & 1 = 1
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE o_month_customers AS
SELECT CAST(DATE '2023-01-01' + to_months(CAST(i AS INTEGER)) AS DATE) AS m, count(*) AS customers
FROM (SELECT customer_id, bit_or(months) AS months FROM o_customer_region GROUP BY 1), range(0, 63) AS t(i)
WHERE (months >> i) & 1 = 1
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE o_month AS
SELECT q.*, c.customers
FROM (
    SELECT
        CAST(date_trunc('month', ordered_at) AS DATE) AS m,
        quantile_cont(amount, 0.9) AS p90,
        median(discount) FILTER (WHERE discount > 0) AS median_discount,
        count(*) FILTER (WHERE discount > 0) AS n_discounted
    FROM main.orders
    WHERE ordered_at IS NOT NULL
    GROUP BY 1
) AS q
LEFT JOIN o_month_customers AS c USING (m);

-- year to date: each customer counts from the first month they ordered in the year
CREATE OR REPLACE TEMP TABLE o_ytd AS
WITH firsts AS (
    SELECT min(CAST(date_trunc('month', ordered_at) AS DATE)) AS m
    FROM main.orders
    WHERE ordered_at IS NOT NULL
    GROUP BY customer_id, year(ordered_at)
), new_customers AS (
    SELECT m, count(*) AS n FROM firsts GROUP BY m
)
SELECT s.m, sum(coalesce(nc.n, 0)) OVER (PARTITION BY year(s.m) ORDER BY s.m) AS customers
FROM o_month AS s LEFT JOIN new_customers AS nc USING (m);

-- through the model: orders joined to customers
CREATE OR REPLACE TEMP TABLE seg AS
SELECT
    CAST(date_trunc('month', o.ordered_at) AS DATE) AS m,
    CASE WHEN grouping(c.segment) = 0 THEN 'segment' ELSE '' END AS dimension,
    CASE WHEN grouping(c.segment) = 0 THEN coalesce(CAST(c.segment AS VARCHAR), '(null)') END AS dimension_value,
    sum(o.amount) AS amount
FROM main.orders AS o
LEFT JOIN main.customers AS c ON c.customer_id = o.customer_id
WHERE o.ordered_at IS NOT NULL
GROUP BY GROUPING SETS ((1), (1, c.segment));

-- 3. support tickets ------------------------------------------------------------------
CREATE OR REPLACE TEMP TABLE t_day AS
SELECT
    CAST(opened_at AS DATE) AS d,
    coalesce(CAST(channel AS VARCHAR), '(null)') AS channel,
    count(*) AS n,
    count(*) FILTER (WHERE csat >= 4) AS n_satisfied,
    count(csat) AS n_rated
FROM main.support_tickets
WHERE opened_at IS NOT NULL
GROUP BY ALL;

CREATE OR REPLACE TEMP TABLE t_add AS
SELECT
    g AS grain, p AS period_start,
    CASE WHEN grouping(channel) = 0 THEN 'channel' ELSE '' END AS dimension,
    CASE WHEN grouping(channel) = 0 THEN channel END AS dimension_value,
    sum(n) AS n, sum(n_satisfied) AS n_satisfied, sum(n_rated) AS n_rated
FROM (
    SELECT 'week' AS g, CAST(date_trunc('week', d) AS DATE) AS p, * FROM t_day
    UNION ALL SELECT 'month', CAST(date_trunc('month', d) AS DATE), * FROM t_day
)
GROUP BY GROUPING SETS ((g, p), (g, p, channel));

CREATE OR REPLACE TEMP TABLE t_month AS
SELECT CAST(date_trunc('month', opened_at) AS DATE) AS m, quantile_cont(first_response_seconds, 0.9) AS p90
FROM main.support_tickets
WHERE opened_at IS NOT NULL
GROUP BY 1;

-- 4. every KPI's rows ---------------------------------------------------------------
CREATE OR REPLACE TABLE bench.hand_values AS
WITH net_revenue AS (
    SELECT 'net_revenue' AS name, grain, period_start, dimension, dimension_value, CAST(net AS DOUBLE) AS value
    FROM o_add WHERE grain IN ('day', 'month')
), orders AS (
    SELECT 'orders', grain, period_start, dimension, dimension_value, CAST(n AS DOUBLE)
    FROM o_add WHERE grain IN ('week', 'month') AND dimension IN ('', 'channel')
), tickets AS (
    SELECT 'tickets', 'month', period_start, '', NULL, CAST(n AS DOUBLE)
    FROM t_add WHERE grain = 'month' AND dimension = ''
)
SELECT * FROM net_revenue
UNION ALL SELECT * FROM orders
UNION ALL SELECT * FROM tickets
UNION ALL
SELECT 'avg_order_value', 'month', period_start, '', NULL,
       CAST(amount_completed AS DOUBLE) / nullif(CAST(n_completed AS DOUBLE), 0)
FROM o_add WHERE grain = 'month' AND dimension = ''
UNION ALL
SELECT 'return_rate', 'month', period_start, dimension, dimension_value,
       CAST(n_returned AS DOUBLE) / nullif(CAST(n AS DOUBLE), 0)
FROM o_add WHERE grain = 'month' AND dimension IN ('', 'channel')
UNION ALL
SELECT 'revenue_trailing_3m', 'month', period_start, '', NULL,
       CAST(sum(net) OVER (ORDER BY period_start RANGE BETWEEN INTERVAL 2 MONTH PRECEDING AND CURRENT ROW) AS DOUBLE)
FROM o_add WHERE grain = 'month' AND dimension = ''
UNION ALL
SELECT 'active_customers', 'month', m, '', NULL, CAST(customers AS DOUBLE) FROM o_month
UNION ALL
SELECT 'active_customers', 'month', m, 'region', region, CAST(customers AS DOUBLE) FROM o_month_region
UNION ALL
SELECT 'order_value_p90', 'month', m, '', NULL, CAST(p90 AS DOUBLE) FROM o_month
UNION ALL
SELECT 'median_discount', 'month', m, '', NULL, CASE WHEN n_discounted > 0 THEN CAST(median_discount AS DOUBLE) END FROM o_month
UNION ALL
SELECT 'customers_ytd', 'month', m, '', NULL, CAST(customers AS DOUBLE) FROM o_ytd
UNION ALL
SELECT 'segment_revenue', 'month', m, dimension, dimension_value, CAST(amount AS DOUBLE) FROM seg
UNION ALL
SELECT 'csat', grain, period_start, dimension, dimension_value,
       CAST(n_satisfied AS DOUBLE) / nullif(CAST(n_rated AS DOUBLE), 0)
FROM t_add
UNION ALL
SELECT 'first_response_p90', 'month', m, '', NULL, CAST(p90 AS DOUBLE) FROM t_month
UNION ALL
-- derived: this month's net revenue against the previous calendar month's, per slice
SELECT 'revenue_growth', 'month', cur.period_start, cur.dimension, cur.dimension_value,
       CAST(cur.net AS DOUBLE) / nullif(CAST(prev.net AS DOUBLE), 0) - 1
FROM o_add AS cur
LEFT JOIN o_add AS prev
    ON prev.grain = 'month' AND prev.period_start = cur.period_start - INTERVAL 1 MONTH
   AND prev.dimension = cur.dimension AND prev.dimension_value IS NOT DISTINCT FROM cur.dimension_value
WHERE cur.grain = 'month'
UNION ALL
SELECT 'tickets_per_order', 'month', t.period_start, '', NULL,
       CAST(t.n AS DOUBLE) / nullif(CAST(o.n AS DOUBLE), 0)
FROM t_add AS t
JOIN o_add AS o ON o.grain = 'month' AND o.dimension = '' AND o.period_start = t.period_start
WHERE t.grain = 'month' AND t.dimension = '';
