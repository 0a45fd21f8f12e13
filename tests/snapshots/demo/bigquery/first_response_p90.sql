-- kpimetrics: kpi first_response_p90 (measure), grains: month
-- definition_hash: 58fc143f7086cf4b
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
WITH `first_response_p90__rows` AS (
  SELECT
    CAST(DATE_TRUNC(CAST(opened_at AS DATE), MONTH) AS DATE) AS `__p`,
    first_response_seconds
  FROM `support_tickets`
  WHERE
    NOT opened_at IS NULL
), `first_response_p90__agg0` AS (
  SELECT
    `__p` AS `__p`,
    PERCENTILE_CONT(first_response_seconds, 0.9) AS `__m0`
  FROM `first_response_p90__rows`
  GROUP BY
    `__p`
), `first_response_p90__bounds` AS (
  SELECT
    MIN(`__p`) AS `lo`,
    MAX(`__p`) AS `hi`
  FROM `first_response_p90__agg0`
), `first_response_p90__spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `first_response_p90__bounds`
  CROSS JOIN UNNEST(GENERATE_DATE_ARRAY(`lo`, `hi`, INTERVAL '1' MONTH)) AS `__s`
)
SELECT
  'first_response_p90' AS `name`,
  'month' AS `grain`,
  `__s`.`period_start` AS `period_start`,
  CAST(DATE_ADD(`__s`.`period_start`, INTERVAL 1 MONTH) AS DATE) AS `period_end`,
  '' AS `dimension`,
  CAST(NULL AS STRING) AS `dimension_value`,
  CAST(`__a`.`__m0` AS FLOAT64) AS `value`,
  CAST(NULL AS FLOAT64) AS `numerator`,
  CAST(NULL AS FLOAT64) AS `denominator`
FROM `first_response_p90__spine` AS `__s`
LEFT JOIN `first_response_p90__agg0` AS `__a`
  ON `__a`.`__p` = `__s`.`period_start`;
