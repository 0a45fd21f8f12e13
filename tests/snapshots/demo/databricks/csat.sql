-- kpimetrics: kpi csat (ratio), grains: week, month
-- definition_hash: e67051001c3871c7
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
WITH `csat__rows` AS (
  SELECT
    CAST(opened_at AS DATE) AS `__p`,
    COALESCE(CAST(channel AS STRING), '(null)') AS `__d0`,
    csat
  FROM `support_tickets`
  WHERE
    NOT opened_at IS NULL
), `csat__pp` AS (
  SELECT
    `__p` AS `__p`,
    `__d0`,
    SUM(`__q0`) AS `__q0`,
    SUM(`__q1`) AS `__q1`,
    SUM(`__q2`) AS `__q2`
  FROM (
    SELECT
      `__p` AS `__p`,
      `__d0`,
      COUNT(*) AS `__q0`,
      COUNT(*) FILTER(WHERE
        csat >= 4) AS `__q1`,
      COUNT(csat) AS `__q2`
    FROM `csat__rows`
    GROUP BY
      `__p`,
      `__d0`
  ) AS `__fine`
  GROUP BY
    GROUPING SETS (
      (`__p`),
      (`__p`, `__d0`)
    )
), `csat__bounds` AS (
  SELECT
    MIN(`__p`) AS `lo`,
    MAX(`__p`) AS `hi`
  FROM `csat__pp`
), `csat__week_agg0` AS (
  SELECT
    CAST(TRUNC(`__p`, 'WEEK') AS DATE) AS `__p`,
    `__d0`,
    SUM(`__q0`) AS `__n0`,
    SUM(`__q1`) AS `__m1`,
    SUM(`__q2`) AS `__m2`
  FROM `csat__pp`
  GROUP BY
    CAST(TRUNC(`__p`, 'WEEK') AS DATE),
    `__d0`
), `csat__week_spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `csat__bounds`
  LATERAL VIEW
  EXPLODE(
    SEQUENCE(
      CAST(TRUNC(`lo`, 'WEEK') AS DATE),
      CAST(TRUNC(`hi`, 'WEEK') AS DATE),
      INTERVAL '7' DAY
    )
  ) __series AS `__s`
), `csat__month_agg0` AS (
  SELECT
    CAST(TRUNC(`__p`, 'MONTH') AS DATE) AS `__p`,
    `__d0`,
    SUM(`__q0`) AS `__n0`,
    SUM(`__q1`) AS `__m1`,
    SUM(`__q2`) AS `__m2`
  FROM `csat__pp`
  GROUP BY
    CAST(TRUNC(`__p`, 'MONTH') AS DATE),
    `__d0`
), `csat__month_spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `csat__bounds`
  LATERAL VIEW
  EXPLODE(
    SEQUENCE(
      CAST(TRUNC(`lo`, 'MONTH') AS DATE),
      CAST(TRUNC(`hi`, 'MONTH') AS DATE),
      INTERVAL '1' MONTH
    )
  ) __series AS `__s`
)
SELECT
  `name`,
  `grain`,
  `period_start`,
  `period_end`,
  `dimension`,
  `dimension_value`,
  `value`,
  `numerator`,
  `denominator`
FROM (
  SELECT
    'csat' AS `name`,
    'week' AS `grain`,
    `__s`.`period_start` AS `period_start`,
    CAST(DATEADD(DAY, 7, `__s`.`period_start`) AS DATE) AS `period_end`,
    '' AS `dimension`,
    CAST(NULL AS STRING) AS `dimension_value`,
    CAST(CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS `value`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `numerator`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m2` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `denominator`
  FROM `csat__week_spine` AS `__s`
  LEFT JOIN `csat__week_agg0` AS `__a`
    ON `__a`.`__p` = `__s`.`period_start` AND `__a`.`__d0` IS NULL
  UNION ALL
  SELECT
    'csat' AS `name`,
    'week' AS `grain`,
    `__a`.`__p` AS `period_start`,
    CAST(DATEADD(DAY, 7, `__a`.`__p`) AS DATE) AS `period_end`,
    'channel' AS `dimension`,
    `__a`.`__d0` AS `dimension_value`,
    CAST(CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS `value`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `numerator`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m2` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `denominator`
  FROM `csat__week_agg0` AS `__a`
  WHERE
    NOT `__a`.`__d0` IS NULL
  UNION ALL
  SELECT
    'csat' AS `name`,
    'month' AS `grain`,
    `__s`.`period_start` AS `period_start`,
    CAST(DATEADD(MONTH, 1, `__s`.`period_start`) AS DATE) AS `period_end`,
    '' AS `dimension`,
    CAST(NULL AS STRING) AS `dimension_value`,
    CAST(CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS `value`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `numerator`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m2` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `denominator`
  FROM `csat__month_spine` AS `__s`
  LEFT JOIN `csat__month_agg0` AS `__a`
    ON `__a`.`__p` = `__s`.`period_start` AND `__a`.`__d0` IS NULL
  UNION ALL
  SELECT
    'csat' AS `name`,
    'month' AS `grain`,
    `__a`.`__p` AS `period_start`,
    CAST(DATEADD(MONTH, 1, `__a`.`__p`) AS DATE) AS `period_end`,
    'channel' AS `dimension`,
    `__a`.`__d0` AS `dimension_value`,
    CAST(CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS `value`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m1` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `numerator`,
    CASE
      WHEN COALESCE(`__a`.`__n0`, 0) > 0
      THEN CAST(`__a`.`__m2` AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS `denominator`
  FROM `csat__month_agg0` AS `__a`
  WHERE
    NOT `__a`.`__d0` IS NULL
) AS `__u`;
