-- kpimetrics: kpi csat (ratio), grains: week, month
-- definition_hash: e67051001c3871c7
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "csat__rows" AS (
  SELECT
    CAST(opened_at AS DATE) AS "__p",
    COALESCE(CAST(channel AS VARCHAR), '(null)') AS "__d0",
    csat
  FROM "support_tickets"
  WHERE
    NOT opened_at IS NULL
), "csat__pp" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    SUM("__q0") AS "__q0",
    SUM("__q1") AS "__q1",
    SUM("__q2") AS "__q2"
  FROM (
    SELECT
      "__p" AS "__p",
      "__d0",
      COUNT(*) AS "__q0",
      COUNT(*) FILTER(WHERE
        csat >= 4) AS "__q1",
      COUNT(csat) AS "__q2"
    FROM "csat__rows"
    GROUP BY
      "__p",
      "__d0"
  ) AS "__fine"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0")
    )
), "csat__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "csat__pp"
), "csat__week_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__m2"
  FROM "csat__pp"
  GROUP BY
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "csat__week_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "csat__bounds"
  CROSS JOIN GENERATE_SERIES(
    CAST(CAST(DATE_TRUNC('WEEK', CAST("lo" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    CAST(CAST(DATE_TRUNC('WEEK', CAST("hi" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    INTERVAL '7 DAY'
  ) AS "__series"("__s")
), "csat__month_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__m2"
  FROM "csat__pp"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "csat__month_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "csat__bounds"
  CROSS JOIN GENERATE_SERIES(
    CAST(CAST(DATE_TRUNC('MONTH', CAST("lo" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    CAST(CAST(DATE_TRUNC('MONTH', CAST("hi" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    INTERVAL '1 MONTH'
  ) AS "__series"("__s")
)
SELECT
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
FROM (
  SELECT
    'csat' AS "name",
    'week' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS DOUBLE PRECISION) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
        ELSE CAST(NULL AS DOUBLE PRECISION)
      END AS DOUBLE PRECISION),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "denominator"
  FROM "csat__week_spine" AS "__s"
  LEFT JOIN "csat__week_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'week' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS DOUBLE PRECISION) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
        ELSE CAST(NULL AS DOUBLE PRECISION)
      END AS DOUBLE PRECISION),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "denominator"
  FROM "csat__week_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS DOUBLE PRECISION) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
        ELSE CAST(NULL AS DOUBLE PRECISION)
      END AS DOUBLE PRECISION),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "denominator"
  FROM "csat__month_spine" AS "__s"
  LEFT JOIN "csat__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS DOUBLE PRECISION) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
        ELSE CAST(NULL AS DOUBLE PRECISION)
      END AS DOUBLE PRECISION),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "denominator"
  FROM "csat__month_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
) AS "__u";
