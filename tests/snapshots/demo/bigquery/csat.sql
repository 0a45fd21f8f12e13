-- kpimetrics: kpi csat (ratio), grains: week, month
-- definition_hash: e67051001c3871c7
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
WITH `csat_week__rows` AS (
  SELECT
    CAST(DATE_TRUNC(CAST(opened_at AS DATE), WEEK) AS DATE) AS `__p`,
    COALESCE(CAST(channel AS STRING), '(null)') AS `__d0`,
    csat
  FROM `support_tickets`
  WHERE
    NOT opened_at IS NULL
), `csat_week__bounds` AS (
  SELECT
    MIN(`__p`) AS `lo`,
    MAX(`__p`) AS `hi`
  FROM `csat_week__rows`
), `csat_week__spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `csat_week__bounds`
  CROSS JOIN UNNEST(GENERATE_DATE_ARRAY(`lo`, `hi`, INTERVAL '7' DAY)) AS `__s`
), `csat_week__agg0` AS (
  SELECT
    `__p` AS `__p`,
    `__d0`,
    COUNT(*) AS `__n0`,
    COUNTIF(csat >= 4) AS `__m1`,
    COUNT(csat) AS `__m2`
  FROM `csat_week__rows`
  GROUP BY
    GROUPING SETS (
      (`__p`),
      (`__p`, `__d0`)
    )
), `csat_month__rows` AS (
  SELECT
    CAST(DATE_TRUNC(CAST(opened_at AS DATE), MONTH) AS DATE) AS `__p`,
    COALESCE(CAST(channel AS STRING), '(null)') AS `__d0`,
    csat
  FROM `support_tickets`
  WHERE
    NOT opened_at IS NULL
), `csat_month__bounds` AS (
  SELECT
    MIN(`__p`) AS `lo`,
    MAX(`__p`) AS `hi`
  FROM `csat_month__rows`
), `csat_month__spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `csat_month__bounds`
  CROSS JOIN UNNEST(GENERATE_DATE_ARRAY(`lo`, `hi`, INTERVAL '1' MONTH)) AS `__s`
), `csat_month__agg0` AS (
  SELECT
    `__p` AS `__p`,
    `__d0`,
    COUNT(*) AS `__n0`,
    COUNTIF(csat >= 4) AS `__m1`,
    COUNT(csat) AS `__m2`
  FROM `csat_month__rows`
  GROUP BY
    GROUPING SETS (
      (`__p`),
      (`__p`, `__d0`)
    )
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
      CAST(DATE_ADD(`__s`.`period_start`, INTERVAL 7 DAY) AS DATE) AS `period_end`,
      '' AS `dimension`,
      CAST(NULL AS STRING) AS `dimension_value`,
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS FLOAT64) / NULLIF(
        CAST(CASE
          WHEN COALESCE(`__a`.`__n0`, 0) > 0
          THEN CAST(`__a`.`__m2` AS FLOAT64)
          ELSE CAST(NULL AS FLOAT64)
        END AS FLOAT64),
        0
      ) AS `value`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `numerator`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `denominator`
    FROM `csat_week__spine` AS `__s`
    LEFT JOIN `csat_week__agg0` AS `__a`
      ON `__a`.`__p` = `__s`.`period_start` AND `__a`.`__d0` IS NULL
    UNION ALL
    SELECT
      'csat' AS `name`,
      'week' AS `grain`,
      `__a`.`__p` AS `period_start`,
      CAST(DATE_ADD(`__a`.`__p`, INTERVAL 7 DAY) AS DATE) AS `period_end`,
      'channel' AS `dimension`,
      `__a`.`__d0` AS `dimension_value`,
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS FLOAT64) / NULLIF(
        CAST(CASE
          WHEN COALESCE(`__a`.`__n0`, 0) > 0
          THEN CAST(`__a`.`__m2` AS FLOAT64)
          ELSE CAST(NULL AS FLOAT64)
        END AS FLOAT64),
        0
      ) AS `value`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `numerator`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `denominator`
    FROM `csat_week__agg0` AS `__a`
    WHERE
      NOT `__a`.`__d0` IS NULL
  ) AS `__u`
  UNION ALL
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
      'month' AS `grain`,
      `__s`.`period_start` AS `period_start`,
      CAST(DATE_ADD(`__s`.`period_start`, INTERVAL 1 MONTH) AS DATE) AS `period_end`,
      '' AS `dimension`,
      CAST(NULL AS STRING) AS `dimension_value`,
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS FLOAT64) / NULLIF(
        CAST(CASE
          WHEN COALESCE(`__a`.`__n0`, 0) > 0
          THEN CAST(`__a`.`__m2` AS FLOAT64)
          ELSE CAST(NULL AS FLOAT64)
        END AS FLOAT64),
        0
      ) AS `value`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `numerator`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `denominator`
    FROM `csat_month__spine` AS `__s`
    LEFT JOIN `csat_month__agg0` AS `__a`
      ON `__a`.`__p` = `__s`.`period_start` AND `__a`.`__d0` IS NULL
    UNION ALL
    SELECT
      'csat' AS `name`,
      'month' AS `grain`,
      `__a`.`__p` AS `period_start`,
      CAST(DATE_ADD(`__a`.`__p`, INTERVAL 1 MONTH) AS DATE) AS `period_end`,
      'channel' AS `dimension`,
      `__a`.`__d0` AS `dimension_value`,
      CAST(CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS FLOAT64) / NULLIF(
        CAST(CASE
          WHEN COALESCE(`__a`.`__n0`, 0) > 0
          THEN CAST(`__a`.`__m2` AS FLOAT64)
          ELSE CAST(NULL AS FLOAT64)
        END AS FLOAT64),
        0
      ) AS `value`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m1` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `numerator`,
      CASE
        WHEN COALESCE(`__a`.`__n0`, 0) > 0
        THEN CAST(`__a`.`__m2` AS FLOAT64)
        ELSE CAST(NULL AS FLOAT64)
      END AS `denominator`
    FROM `csat_month__agg0` AS `__a`
    WHERE
      NOT `__a`.`__d0` IS NULL
  ) AS `__u`
) AS `__u`;
