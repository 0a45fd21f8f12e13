-- kpimetrics: standard chat_first_response_median (measure), grains: month
-- definition_hash: 1fc03f297409e773
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
WITH `chat_first_response_median__rows` AS (
  SELECT
    CAST(TRUNC(CAST(opened_at AS DATE), 'MONTH') AS DATE) AS `__p`,
    first_response_seconds,
    channel
  FROM `support_tickets`
  WHERE
    NOT opened_at IS NULL
), `chat_first_response_median__agg0` AS (
  SELECT
    `__p` AS `__p`,
    COUNT(*) FILTER(WHERE
      channel = 'chat') AS `__n0`,
    MEDIAN(first_response_seconds) FILTER(WHERE
      channel = 'chat') AS `__m1`
  FROM `chat_first_response_median__rows`
  GROUP BY
    `__p`
), `chat_first_response_median__bounds` AS (
  SELECT
    MIN(`__p`) AS `lo`,
    MAX(`__p`) AS `hi`
  FROM `chat_first_response_median__agg0`
), `chat_first_response_median__spine` AS (
  SELECT
    CAST(`__s` AS DATE) AS `period_start`,
    ROW_NUMBER() OVER (ORDER BY CAST(`__s` AS DATE) NULLS LAST) AS `__i`
  FROM `chat_first_response_median__bounds`
  LATERAL VIEW
  EXPLODE(SEQUENCE(`lo`, `hi`, INTERVAL '1' MONTH)) __series AS `__s`
)
SELECT
  'chat_first_response_median' AS `name`,
  'month' AS `grain`,
  `__s`.`period_start` AS `period_start`,
  CAST(DATEADD(MONTH, 1, `__s`.`period_start`) AS DATE) AS `period_end`,
  '' AS `dimension`,
  CAST(NULL AS STRING) AS `dimension_value`,
  CASE
    WHEN COALESCE(`__a`.`__n0`, 0) > 0
    THEN CAST(`__a`.`__m1` AS DOUBLE)
    ELSE CAST(NULL AS DOUBLE)
  END AS `value`,
  CAST(NULL AS DOUBLE) AS `numerator`,
  CAST(NULL AS DOUBLE) AS `denominator`
FROM `chat_first_response_median__spine` AS `__s`
LEFT JOIN `chat_first_response_median__agg0` AS `__a`
  ON `__a`.`__p` = `__s`.`period_start`;
