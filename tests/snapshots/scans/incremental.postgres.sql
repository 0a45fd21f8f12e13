WITH "__rows" AS (
  SELECT
    CAST(ordered_at AS DATE) AS "__p",
    COALESCE(CAST(region AS VARCHAR), '(null)') AS "__d0",
    COALESCE(CAST(channel AS VARCHAR), '(null)') AS "__d1",
    amount,
    status,
    customer_id
  FROM "main"."orders"
  WHERE
    NOT ordered_at IS NULL AND ordered_at >= CAST('2025-01-01' AS DATE)
), "__pp" AS (
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
      SUM(amount) AS "__q1",
      COUNT(*) FILTER(WHERE
        status = 'completed') AS "__q2"
    FROM "__rows"
    GROUP BY
      "__p",
      "__d0"
  ) AS "__fine"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0")
    )
), "__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__pp"
), "__month_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__n2"
  FROM "__pp"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "__month_agg2" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    CAST(NULL AS VARCHAR) AS "__d1",
    0 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE)
  UNION ALL
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d1",
    1 AS "__set",
    COUNT(DISTINCT customer_id) AS "__m0"
  FROM "__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d1"
), "__month_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN GENERATE_SERIES(
    CAST(LEAST(
      CAST(DATE_TRUNC('MONTH', CAST("lo" AS TIMESTAMP)) AS DATE),
      CAST('2025-11-01' AS DATE)
    ) AS TIMESTAMP),
    CAST(CAST(DATE_TRUNC('MONTH', CAST("hi" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    INTERVAL '1 MONTH'
  ) AS "__series"("__s")
), "__month_map_periods_3" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "__month_spine" AS "__a"
  JOIN "__month_spine" AS "__b"
    ON "__b"."__i" BETWEEN "__a"."__i" AND "__a"."__i" + 2
), "__month_agg1" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "__pp"
  JOIN "__month_map_periods_3"
    ON CAST(DATE_TRUNC('MONTH', CAST("__pp"."__p" AS TIMESTAMP)) AS DATE) = "__src"
  WHERE
    "__d0" IS NULL
  GROUP BY
    "__dst"
), "__month_map_to_date_year" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "__month_spine" AS "__a"
  JOIN "__month_spine" AS "__b"
    ON CAST(DATE_TRUNC('YEAR', CAST("__a"."period_start" AS TIMESTAMP)) AS DATE) = CAST(DATE_TRUNC('YEAR', CAST("__b"."period_start" AS TIMESTAMP)) AS DATE)
    AND "__b"."period_start" >= "__a"."period_start"
), "__month_agg3_pp" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    SUM("__q0") AS "__q0",
    NULL AS "__c1"
  FROM "__pp"
  WHERE
    "__d0" IS NULL
  GROUP BY
    CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE)
  UNION ALL
  SELECT
    "__p" AS "__p",
    NULL AS "__q0",
    COUNT(*) AS "__c1"
  FROM (
    SELECT
      MIN(CAST(DATE_TRUNC('MONTH', CAST("__p" AS TIMESTAMP)) AS DATE)) AS "__p"
    FROM "__rows"
    WHERE
      NOT customer_id IS NULL
    GROUP BY
      EXTRACT(YEAR FROM "__p"),
      customer_id
  ) AS "__first"
  GROUP BY
    "__p"
), "__month_agg3" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q0") AS "__n0",
    COALESCE(SUM("__c1"), 0) AS "__m1"
  FROM "__month_agg3_pp"
  JOIN "__month_map_to_date_year"
    ON "__month_agg3_pp"."__p" = "__src"
  GROUP BY
    "__dst"
), "__week_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "__pp"
  GROUP BY
    CAST(DATE_TRUNC('WEEK', CAST("__p" AS TIMESTAMP)) AS DATE),
    "__d0"
), "__week_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN GENERATE_SERIES(
    CAST(LEAST(
      CAST(DATE_TRUNC('WEEK', CAST("lo" AS TIMESTAMP)) AS DATE),
      CAST('2025-10-20' AS DATE)
    ) AS TIMESTAMP),
    CAST(CAST(DATE_TRUNC('WEEK', CAST("hi" AS TIMESTAMP)) AS DATE) AS TIMESTAMP),
    INTERVAL '7 DAY'
  ) AS "__series"("__s")
), "__week_map_periods_3" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "__week_spine" AS "__a"
  JOIN "__week_spine" AS "__b"
    ON "__b"."__i" BETWEEN "__a"."__i" AND "__a"."__i" + 2
), "__week_agg1" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "__pp"
  JOIN "__week_map_periods_3"
    ON CAST(DATE_TRUNC('WEEK', CAST("__pp"."__p" AS TIMESTAMP)) AS DATE) = "__src"
  WHERE
    "__d0" IS NULL
  GROUP BY
    "__dst"
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
    'revenue' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  WHERE
    "__s"."period_start" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'revenue' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL AND "__a"."__p" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'orders' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n2", 0) > 0
      THEN CAST("__a"."__n2" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  WHERE
    "__s"."period_start" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'buyers' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg2" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__set" = 0
  WHERE
    "__s"."period_start" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'buyers' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d1" AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_agg2" AS "__a"
  WHERE
    "__a"."__set" = 1 AND "__a"."__p" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'revenue_trailing_3' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  WHERE
    "__s"."period_start" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'buyers_ytd' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg3" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  WHERE
    "__s"."period_start" >= CAST('2025-11-01' AS DATE)
  UNION ALL
  SELECT
    'revenue' AS "name",
    'week' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__week_spine" AS "__s"
  LEFT JOIN "__week_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  WHERE
    "__s"."period_start" >= CAST('2025-10-20' AS DATE)
  UNION ALL
  SELECT
    'revenue' AS "name",
    'week' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__week_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL AND "__a"."__p" >= CAST('2025-10-20' AS DATE)
  UNION ALL
  SELECT
    'revenue_trailing_3' AS "name",
    'week' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '7 DAY' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "__week_spine" AS "__s"
  LEFT JOIN "__week_agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  WHERE
    "__s"."period_start" >= CAST('2025-10-20' AS DATE)
) AS "__u";
