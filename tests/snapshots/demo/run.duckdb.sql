-- kpimetrics run script for demo (duckdb); a full refresh of 12 KPI(s).

-- One scan per model and time column, for all grains; derived KPIs read the staged values.

CREATE TABLE IF NOT EXISTS "kpi_stage" (
  "name" TEXT,
  "grain" TEXT,
  "period_start" DATE,
  "period_end" DATE,
  "dimension" TEXT,
  "dimension_value" TEXT,
  "value" DOUBLE,
  "numerator" DOUBLE,
  "denominator" DOUBLE
);

-- scan: ref:orders_enriched at month, week: active_customers, reorder_rate_30d
INSERT INTO "kpi_stage" (
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
)
WITH "__model_orders_enriched" AS (
  /* Orders with the buyer's segment and their place in the customer's order history. */
  /*   customer_order_number  1 for a customer's first order (since start_date), 2 for the next, ... */
  /*   is_repeat              true from the customer's second order on */
  /*   reordered_within_30d   true when the customer's previous order was at most 30 days earlier */
  WITH numbered AS (
    SELECT
      o.order_id,
      o.customer_id,
      o.ordered_at,
      o.region,
      o.channel,
      o.amount,
      o.discount,
      o.status,
      c.segment,
      ROW_NUMBER() OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS customer_order_number,
      LAG(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS previous_ordered_at
    FROM "orders" AS o
    LEFT JOIN "customers" AS c
      ON c.customer_id = o.customer_id
    WHERE
      o.ordered_at >= CAST('2025-01-01' AS TIMESTAMP)
  )
  SELECT
    order_id,
    customer_id,
    ordered_at,
    region,
    channel,
    amount,
    discount,
    amount - discount AS net_amount,
    status,
    segment,
    customer_order_number,
    previous_ordered_at,
    customer_order_number > 1 AS is_repeat,
    COALESCE(previous_ordered_at >= ordered_at - INTERVAL '30' DAY, FALSE) AS reordered_within_30d
  FROM numbered
), "__rows" AS (
  SELECT
    CAST(ordered_at AS DATE) AS "__p",
    COALESCE(CAST(segment AS TEXT), '(null)') AS "__d0",
    customer_id,
    reordered_within_30d
  FROM "__model_orders_enriched"
  WHERE
    NOT ordered_at IS NULL
), "__origin" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__rows"
), "__month_agg0_bits" AS (
  WITH __f0 AS (
    SELECT
      customer_id AS "__x",
      "__w",
      "__d0",
      BIT_OR("__bit") AS "__any0"
    FROM (
      SELECT
        *,
        "__n" // 63 AS "__w",
        CAST(1 AS BIGINT) << (
          "__n" % 63
        ) AS "__bit"
      FROM (
        SELECT
          *,
          DATE_DIFF('MONTH', "__o", "__p") AS "__n"
        FROM "__rows"
        CROSS JOIN (
          SELECT
            CAST(DATE_TRUNC('MONTH', "__origin"."lo") AS DATE) AS "__o"
          FROM "__origin"
        ) AS "__start"
      ) AS "__r"
    ) AS "__r"
    GROUP BY
      customer_id,
      "__w",
      "__d0"
  )
  SELECT
    "__w",
    "__d0",
    "__set",
    BIT_OR("__any0") AS "__any0",
    SUM((
      "__k1" >> 0
    ) & 1) AS "__k1_0",
    SUM((
      "__k1" >> 1
    ) & 1) AS "__k1_1",
    SUM((
      "__k1" >> 2
    ) & 1) AS "__k1_2",
    SUM((
      "__k1" >> 3
    ) & 1) AS "__k1_3",
    SUM((
      "__k1" >> 4
    ) & 1) AS "__k1_4",
    SUM((
      "__k1" >> 5
    ) & 1) AS "__k1_5",
    SUM((
      "__k1" >> 6
    ) & 1) AS "__k1_6",
    SUM((
      "__k1" >> 7
    ) & 1) AS "__k1_7",
    SUM((
      "__k1" >> 8
    ) & 1) AS "__k1_8",
    SUM((
      "__k1" >> 9
    ) & 1) AS "__k1_9",
    SUM((
      "__k1" >> 10
    ) & 1) AS "__k1_10",
    SUM((
      "__k1" >> 11
    ) & 1) AS "__k1_11",
    SUM((
      "__k1" >> 12
    ) & 1) AS "__k1_12",
    SUM((
      "__k1" >> 13
    ) & 1) AS "__k1_13",
    SUM((
      "__k1" >> 14
    ) & 1) AS "__k1_14",
    SUM((
      "__k1" >> 15
    ) & 1) AS "__k1_15",
    SUM((
      "__k1" >> 16
    ) & 1) AS "__k1_16",
    SUM((
      "__k1" >> 17
    ) & 1) AS "__k1_17",
    SUM((
      "__k1" >> 18
    ) & 1) AS "__k1_18",
    SUM((
      "__k1" >> 19
    ) & 1) AS "__k1_19",
    SUM((
      "__k1" >> 20
    ) & 1) AS "__k1_20",
    SUM((
      "__k1" >> 21
    ) & 1) AS "__k1_21",
    SUM((
      "__k1" >> 22
    ) & 1) AS "__k1_22",
    SUM((
      "__k1" >> 23
    ) & 1) AS "__k1_23",
    SUM((
      "__k1" >> 24
    ) & 1) AS "__k1_24",
    SUM((
      "__k1" >> 25
    ) & 1) AS "__k1_25",
    SUM((
      "__k1" >> 26
    ) & 1) AS "__k1_26",
    SUM((
      "__k1" >> 27
    ) & 1) AS "__k1_27",
    SUM((
      "__k1" >> 28
    ) & 1) AS "__k1_28",
    SUM((
      "__k1" >> 29
    ) & 1) AS "__k1_29",
    SUM((
      "__k1" >> 30
    ) & 1) AS "__k1_30",
    SUM((
      "__k1" >> 31
    ) & 1) AS "__k1_31",
    SUM((
      "__k1" >> 32
    ) & 1) AS "__k1_32",
    SUM((
      "__k1" >> 33
    ) & 1) AS "__k1_33",
    SUM((
      "__k1" >> 34
    ) & 1) AS "__k1_34",
    SUM((
      "__k1" >> 35
    ) & 1) AS "__k1_35",
    SUM((
      "__k1" >> 36
    ) & 1) AS "__k1_36",
    SUM((
      "__k1" >> 37
    ) & 1) AS "__k1_37",
    SUM((
      "__k1" >> 38
    ) & 1) AS "__k1_38",
    SUM((
      "__k1" >> 39
    ) & 1) AS "__k1_39",
    SUM((
      "__k1" >> 40
    ) & 1) AS "__k1_40",
    SUM((
      "__k1" >> 41
    ) & 1) AS "__k1_41",
    SUM((
      "__k1" >> 42
    ) & 1) AS "__k1_42",
    SUM((
      "__k1" >> 43
    ) & 1) AS "__k1_43",
    SUM((
      "__k1" >> 44
    ) & 1) AS "__k1_44",
    SUM((
      "__k1" >> 45
    ) & 1) AS "__k1_45",
    SUM((
      "__k1" >> 46
    ) & 1) AS "__k1_46",
    SUM((
      "__k1" >> 47
    ) & 1) AS "__k1_47",
    SUM((
      "__k1" >> 48
    ) & 1) AS "__k1_48",
    SUM((
      "__k1" >> 49
    ) & 1) AS "__k1_49",
    SUM((
      "__k1" >> 50
    ) & 1) AS "__k1_50",
    SUM((
      "__k1" >> 51
    ) & 1) AS "__k1_51",
    SUM((
      "__k1" >> 52
    ) & 1) AS "__k1_52",
    SUM((
      "__k1" >> 53
    ) & 1) AS "__k1_53",
    SUM((
      "__k1" >> 54
    ) & 1) AS "__k1_54",
    SUM((
      "__k1" >> 55
    ) & 1) AS "__k1_55",
    SUM((
      "__k1" >> 56
    ) & 1) AS "__k1_56",
    SUM((
      "__k1" >> 57
    ) & 1) AS "__k1_57",
    SUM((
      "__k1" >> 58
    ) & 1) AS "__k1_58",
    SUM((
      "__k1" >> 59
    ) & 1) AS "__k1_59",
    SUM((
      "__k1" >> 60
    ) & 1) AS "__k1_60",
    SUM((
      "__k1" >> 61
    ) & 1) AS "__k1_61",
    SUM((
      "__k1" >> 62
    ) & 1) AS "__k1_62"
  FROM (
    SELECT
      "__w",
      CAST(NULL AS TEXT) AS "__d0",
      0 AS "__set",
      BIT_OR("__any0") AS "__any0",
      CASE WHEN NOT "__x" IS NULL THEN BIT_OR("__any0") END AS "__k1"
    FROM "__f0"
    GROUP BY
      "__x",
      "__w"
    UNION ALL
    SELECT
      "__w",
      "__d0",
      1 AS "__set",
      "__any0" AS "__any0",
      CASE WHEN NOT "__x" IS NULL THEN "__any0" END AS "__k1"
    FROM "__f0"
  ) AS "__x"
  GROUP BY
    "__w",
    "__d0",
    "__set"
), "__month_agg0" AS (
  SELECT
    CAST(CAST(DATE_TRUNC('MONTH', "__origin"."lo") AS DATE) + INTERVAL ("__w" * 63 + "__j") MONTH AS DATE) AS "__p",
    "__d0",
    "__set",
    COALESCE(
      [
        "__k1_0",
        "__k1_1",
        "__k1_2",
        "__k1_3",
        "__k1_4",
        "__k1_5",
        "__k1_6",
        "__k1_7",
        "__k1_8",
        "__k1_9",
        "__k1_10",
        "__k1_11",
        "__k1_12",
        "__k1_13",
        "__k1_14",
        "__k1_15",
        "__k1_16",
        "__k1_17",
        "__k1_18",
        "__k1_19",
        "__k1_20",
        "__k1_21",
        "__k1_22",
        "__k1_23",
        "__k1_24",
        "__k1_25",
        "__k1_26",
        "__k1_27",
        "__k1_28",
        "__k1_29",
        "__k1_30",
        "__k1_31",
        "__k1_32",
        "__k1_33",
        "__k1_34",
        "__k1_35",
        "__k1_36",
        "__k1_37",
        "__k1_38",
        "__k1_39",
        "__k1_40",
        "__k1_41",
        "__k1_42",
        "__k1_43",
        "__k1_44",
        "__k1_45",
        "__k1_46",
        "__k1_47",
        "__k1_48",
        "__k1_49",
        "__k1_50",
        "__k1_51",
        "__k1_52",
        "__k1_53",
        "__k1_54",
        "__k1_55",
        "__k1_56",
        "__k1_57",
        "__k1_58",
        "__k1_59",
        "__k1_60",
        "__k1_61",
        "__k1_62"
      ]["__j" + 1],
      0
    ) AS "__m0"
  FROM "__month_agg0_bits"
  CROSS JOIN "__origin"
  CROSS JOIN UNNEST(GENERATE_SERIES(0, 62)) AS "__bits"("__j")
  WHERE
    (
      "__any0" >> "__j"
    ) & 1 = 1
), "__month_agg1" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE) AS "__p",
    COUNT(*) FILTER(WHERE
      reordered_within_30d) AS "__m0",
    COUNT(*) AS "__m1"
  FROM "__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE)
), "__month_bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__month_agg0"
), "__month_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__month_bounds"
  CROSS JOIN UNNEST(CAST(GENERATE_SERIES("lo", "hi", INTERVAL '1' MONTH) AS DATE[])) AS "__series"("__s")
), "__week_agg0_bits" AS (
  WITH __f0 AS (
    SELECT
      customer_id AS "__x",
      "__w",
      "__d0",
      BIT_OR("__bit") AS "__any0"
    FROM (
      SELECT
        *,
        "__n" // 63 AS "__w",
        CAST(1 AS BIGINT) << (
          "__n" % 63
        ) AS "__bit"
      FROM (
        SELECT
          *,
          DATE_DIFF('DAY', "__o", "__p") // 7 AS "__n"
        FROM "__rows"
        CROSS JOIN (
          SELECT
            CAST(DATE_TRUNC('WEEK', "__origin"."lo") AS DATE) AS "__o"
          FROM "__origin"
        ) AS "__start"
      ) AS "__r"
    ) AS "__r"
    GROUP BY
      customer_id,
      "__w",
      "__d0"
  )
  SELECT
    "__w",
    "__d0",
    "__set",
    BIT_OR("__any0") AS "__any0",
    SUM((
      "__k1" >> 0
    ) & 1) AS "__k1_0",
    SUM((
      "__k1" >> 1
    ) & 1) AS "__k1_1",
    SUM((
      "__k1" >> 2
    ) & 1) AS "__k1_2",
    SUM((
      "__k1" >> 3
    ) & 1) AS "__k1_3",
    SUM((
      "__k1" >> 4
    ) & 1) AS "__k1_4",
    SUM((
      "__k1" >> 5
    ) & 1) AS "__k1_5",
    SUM((
      "__k1" >> 6
    ) & 1) AS "__k1_6",
    SUM((
      "__k1" >> 7
    ) & 1) AS "__k1_7",
    SUM((
      "__k1" >> 8
    ) & 1) AS "__k1_8",
    SUM((
      "__k1" >> 9
    ) & 1) AS "__k1_9",
    SUM((
      "__k1" >> 10
    ) & 1) AS "__k1_10",
    SUM((
      "__k1" >> 11
    ) & 1) AS "__k1_11",
    SUM((
      "__k1" >> 12
    ) & 1) AS "__k1_12",
    SUM((
      "__k1" >> 13
    ) & 1) AS "__k1_13",
    SUM((
      "__k1" >> 14
    ) & 1) AS "__k1_14",
    SUM((
      "__k1" >> 15
    ) & 1) AS "__k1_15",
    SUM((
      "__k1" >> 16
    ) & 1) AS "__k1_16",
    SUM((
      "__k1" >> 17
    ) & 1) AS "__k1_17",
    SUM((
      "__k1" >> 18
    ) & 1) AS "__k1_18",
    SUM((
      "__k1" >> 19
    ) & 1) AS "__k1_19",
    SUM((
      "__k1" >> 20
    ) & 1) AS "__k1_20",
    SUM((
      "__k1" >> 21
    ) & 1) AS "__k1_21",
    SUM((
      "__k1" >> 22
    ) & 1) AS "__k1_22",
    SUM((
      "__k1" >> 23
    ) & 1) AS "__k1_23",
    SUM((
      "__k1" >> 24
    ) & 1) AS "__k1_24",
    SUM((
      "__k1" >> 25
    ) & 1) AS "__k1_25",
    SUM((
      "__k1" >> 26
    ) & 1) AS "__k1_26",
    SUM((
      "__k1" >> 27
    ) & 1) AS "__k1_27",
    SUM((
      "__k1" >> 28
    ) & 1) AS "__k1_28",
    SUM((
      "__k1" >> 29
    ) & 1) AS "__k1_29",
    SUM((
      "__k1" >> 30
    ) & 1) AS "__k1_30",
    SUM((
      "__k1" >> 31
    ) & 1) AS "__k1_31",
    SUM((
      "__k1" >> 32
    ) & 1) AS "__k1_32",
    SUM((
      "__k1" >> 33
    ) & 1) AS "__k1_33",
    SUM((
      "__k1" >> 34
    ) & 1) AS "__k1_34",
    SUM((
      "__k1" >> 35
    ) & 1) AS "__k1_35",
    SUM((
      "__k1" >> 36
    ) & 1) AS "__k1_36",
    SUM((
      "__k1" >> 37
    ) & 1) AS "__k1_37",
    SUM((
      "__k1" >> 38
    ) & 1) AS "__k1_38",
    SUM((
      "__k1" >> 39
    ) & 1) AS "__k1_39",
    SUM((
      "__k1" >> 40
    ) & 1) AS "__k1_40",
    SUM((
      "__k1" >> 41
    ) & 1) AS "__k1_41",
    SUM((
      "__k1" >> 42
    ) & 1) AS "__k1_42",
    SUM((
      "__k1" >> 43
    ) & 1) AS "__k1_43",
    SUM((
      "__k1" >> 44
    ) & 1) AS "__k1_44",
    SUM((
      "__k1" >> 45
    ) & 1) AS "__k1_45",
    SUM((
      "__k1" >> 46
    ) & 1) AS "__k1_46",
    SUM((
      "__k1" >> 47
    ) & 1) AS "__k1_47",
    SUM((
      "__k1" >> 48
    ) & 1) AS "__k1_48",
    SUM((
      "__k1" >> 49
    ) & 1) AS "__k1_49",
    SUM((
      "__k1" >> 50
    ) & 1) AS "__k1_50",
    SUM((
      "__k1" >> 51
    ) & 1) AS "__k1_51",
    SUM((
      "__k1" >> 52
    ) & 1) AS "__k1_52",
    SUM((
      "__k1" >> 53
    ) & 1) AS "__k1_53",
    SUM((
      "__k1" >> 54
    ) & 1) AS "__k1_54",
    SUM((
      "__k1" >> 55
    ) & 1) AS "__k1_55",
    SUM((
      "__k1" >> 56
    ) & 1) AS "__k1_56",
    SUM((
      "__k1" >> 57
    ) & 1) AS "__k1_57",
    SUM((
      "__k1" >> 58
    ) & 1) AS "__k1_58",
    SUM((
      "__k1" >> 59
    ) & 1) AS "__k1_59",
    SUM((
      "__k1" >> 60
    ) & 1) AS "__k1_60",
    SUM((
      "__k1" >> 61
    ) & 1) AS "__k1_61",
    SUM((
      "__k1" >> 62
    ) & 1) AS "__k1_62"
  FROM (
    SELECT
      "__w",
      CAST(NULL AS TEXT) AS "__d0",
      0 AS "__set",
      BIT_OR("__any0") AS "__any0",
      CASE WHEN NOT "__x" IS NULL THEN BIT_OR("__any0") END AS "__k1"
    FROM "__f0"
    GROUP BY
      "__x",
      "__w"
    UNION ALL
    SELECT
      "__w",
      "__d0",
      1 AS "__set",
      "__any0" AS "__any0",
      CASE WHEN NOT "__x" IS NULL THEN "__any0" END AS "__k1"
    FROM "__f0"
  ) AS "__x"
  GROUP BY
    "__w",
    "__d0",
    "__set"
), "__week_agg0" AS (
  SELECT
    CAST(CAST(DATE_TRUNC('WEEK', "__origin"."lo") AS DATE) + INTERVAL ((
      "__w" * 63 + "__j"
    ) * 7) DAY AS DATE) AS "__p",
    "__d0",
    "__set",
    COALESCE(
      [
        "__k1_0",
        "__k1_1",
        "__k1_2",
        "__k1_3",
        "__k1_4",
        "__k1_5",
        "__k1_6",
        "__k1_7",
        "__k1_8",
        "__k1_9",
        "__k1_10",
        "__k1_11",
        "__k1_12",
        "__k1_13",
        "__k1_14",
        "__k1_15",
        "__k1_16",
        "__k1_17",
        "__k1_18",
        "__k1_19",
        "__k1_20",
        "__k1_21",
        "__k1_22",
        "__k1_23",
        "__k1_24",
        "__k1_25",
        "__k1_26",
        "__k1_27",
        "__k1_28",
        "__k1_29",
        "__k1_30",
        "__k1_31",
        "__k1_32",
        "__k1_33",
        "__k1_34",
        "__k1_35",
        "__k1_36",
        "__k1_37",
        "__k1_38",
        "__k1_39",
        "__k1_40",
        "__k1_41",
        "__k1_42",
        "__k1_43",
        "__k1_44",
        "__k1_45",
        "__k1_46",
        "__k1_47",
        "__k1_48",
        "__k1_49",
        "__k1_50",
        "__k1_51",
        "__k1_52",
        "__k1_53",
        "__k1_54",
        "__k1_55",
        "__k1_56",
        "__k1_57",
        "__k1_58",
        "__k1_59",
        "__k1_60",
        "__k1_61",
        "__k1_62"
      ]["__j" + 1],
      0
    ) AS "__m0"
  FROM "__week_agg0_bits"
  CROSS JOIN "__origin"
  CROSS JOIN UNNEST(GENERATE_SERIES(0, 62)) AS "__bits"("__j")
  WHERE
    (
      "__any0" >> "__j"
    ) & 1 = 1
), "__week_bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__week_agg0"
), "__week_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__week_bounds"
  CROSS JOIN UNNEST(CAST(GENERATE_SERIES("lo", "hi", INTERVAL '7' DAY) AS DATE[])) AS "__series"("__s")
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
    'active_customers' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE) AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__set" = 0
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    'segment' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE) AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_agg0" AS "__a"
  WHERE
    "__a"."__set" = 1
  UNION ALL
  SELECT
    'reorder_rate_30d' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST(CAST("__a"."__m0" AS DOUBLE) AS DOUBLE) / NULLIF(CAST(CAST("__a"."__m1" AS DOUBLE) AS DOUBLE), 0) AS "value",
    CAST("__a"."__m0" AS DOUBLE) AS "numerator",
    CAST("__a"."__m1" AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'week' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 7 DAY AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE) AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__week_spine" AS "__s"
  LEFT JOIN "__week_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__set" = 0
  UNION ALL
  SELECT
    'active_customers' AS "name",
    'week' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 7 DAY AS DATE) AS "period_end",
    'segment' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE) AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__week_agg0" AS "__a"
  WHERE
    "__a"."__set" = 1
) AS "__u";

-- scan: source:shop.orders at month: mobile_order_share, net_revenue, revenue_trailing_3m, bookings_ytd
INSERT INTO "kpi_stage" (
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
)
WITH "__rows" AS NOT MATERIALIZED (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(ordered_at AS DATE)) AS DATE) AS "__p",
    COALESCE(CAST(region AS TEXT), '(null)') AS "__d0",
    COALESCE(CAST(channel AS TEXT), '(null)') AS "__d1",
    channel,
    amount,
    discount,
    status
  FROM "orders"
  WHERE
    NOT ordered_at IS NULL
), "__pp" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    "__d1",
    SUM("__q0") AS "__q0",
    SUM("__q1") AS "__q1",
    SUM("__q2") AS "__q2",
    SUM("__q3") AS "__q3",
    SUM("__q4") AS "__q4",
    SUM("__q5") AS "__q5"
  FROM (
    SELECT
      "__p" AS "__p",
      "__d0",
      "__d1",
      COUNT(*) AS "__q0",
      COUNT(*) FILTER(WHERE
        channel = 'mobile') AS "__q1",
      COUNT(*) FILTER(WHERE
        status = 'completed') AS "__q2",
      SUM(amount - discount) FILTER(WHERE
        status = 'completed') AS "__q3",
      COUNT(*) FILTER(WHERE
        status <> 'cancelled') AS "__q4",
      SUM(amount) FILTER(WHERE
        status <> 'cancelled') AS "__q5"
    FROM "__rows"
    GROUP BY
      "__p",
      "__d0",
      "__d1"
  ) AS "__fine"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0"),
      ("__p", "__d1")
    )
), "__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "__pp"
), "__agg0" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    "__d1",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__n2",
    SUM("__q3") AS "__m3"
  FROM "__pp"
  GROUP BY
    "__p",
    "__d0",
    "__d1"
), "__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN UNNEST(CAST(GENERATE_SERIES("lo", "hi", INTERVAL '1' MONTH) AS DATE[])) AS "__series"("__s")
), "__map_periods_3" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "__spine" AS "__a"
  JOIN "__spine" AS "__b"
    ON "__b"."__i" BETWEEN "__a"."__i" AND "__a"."__i" + 2
), "__agg1" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q2") AS "__n0",
    SUM("__q3") AS "__m1"
  FROM "__pp"
  JOIN "__map_periods_3"
    ON "__pp"."__p" = "__src"
  WHERE
    "__d0" IS NULL AND "__d1" IS NULL
  GROUP BY
    "__dst"
), "__map_to_date_year" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "__spine" AS "__a"
  JOIN "__spine" AS "__b"
    ON CAST(DATE_TRUNC('YEAR', "__a"."period_start") AS DATE) = CAST(DATE_TRUNC('YEAR', "__b"."period_start") AS DATE)
    AND "__b"."period_start" >= "__a"."period_start"
), "__agg2" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q4") AS "__n0",
    SUM("__q5") AS "__m1"
  FROM "__pp"
  JOIN "__map_to_date_year"
    ON "__pp"."__p" = "__src"
  WHERE
    "__d0" IS NULL AND "__d1" IS NULL
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
    'mobile_order_share' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__n0" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__n0" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__spine" AS "__s"
  LEFT JOIN "__agg0" AS "__a"
    ON (
      "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
    )
    AND "__a"."__d1" IS NULL
  UNION ALL
  SELECT
    'mobile_order_share' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__n0" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__n0" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'net_revenue' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n2", 0) > 0
      THEN CAST("__a"."__m3" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__spine" AS "__s"
  LEFT JOIN "__agg0" AS "__a"
    ON (
      "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
    )
    AND "__a"."__d1" IS NULL
  UNION ALL
  SELECT
    'net_revenue' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n2", 0) > 0
      THEN CAST("__a"."__m3" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'net_revenue' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d1" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n2", 0) > 0
      THEN CAST("__a"."__m3" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__agg0" AS "__a"
  WHERE
    NOT "__a"."__d1" IS NULL
  UNION ALL
  SELECT
    'revenue_trailing_3m' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__spine" AS "__s"
  LEFT JOIN "__agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  UNION ALL
  SELECT
    'bookings_ytd' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__spine" AS "__s"
  LEFT JOIN "__agg2" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
) AS "__u";

-- scan: source:shop.support_tickets at week, month: csat, first_response_p90, avg_resolution_seconds, call_wrap_up_seconds, chat_first_response_median
INSERT INTO "kpi_stage" (
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
)
WITH "__rows" AS NOT MATERIALIZED (
  SELECT
    CAST(opened_at AS DATE) AS "__p",
    COALESCE(CAST(channel AS TEXT), '(null)') AS "__d0",
    csat,
    first_response_seconds,
    resolution_seconds,
    wrap_up_seconds,
    channel
  FROM "support_tickets"
  WHERE
    NOT opened_at IS NULL
), "__pp" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    SUM("__q0") AS "__q0",
    SUM("__q1") AS "__q1",
    SUM("__q2") AS "__q2",
    SUM("__q3") AS "__q3",
    SUM("__q4") AS "__q4",
    SUM("__q5") AS "__q5",
    SUM("__q6") AS "__q6",
    SUM("__q7") AS "__q7"
  FROM (
    SELECT
      "__p" AS "__p",
      "__d0",
      COUNT(*) AS "__q0",
      COUNT(*) FILTER(WHERE
        csat >= 4) AS "__q1",
      COUNT(csat) AS "__q2",
      SUM(resolution_seconds) AS "__q3",
      COUNT(resolution_seconds) AS "__q4",
      COUNT(*) FILTER(WHERE
        channel = 'phone') AS "__q5",
      SUM(wrap_up_seconds) FILTER(WHERE
        channel = 'phone') AS "__q6",
      COUNT(wrap_up_seconds) FILTER(WHERE
        channel = 'phone') AS "__q7"
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
), "__week_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('WEEK', "__p") AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__m2"
  FROM "__pp"
  GROUP BY
    CAST(DATE_TRUNC('WEEK', "__p") AS DATE),
    "__d0"
), "__week_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN UNNEST(CAST(GENERATE_SERIES(
    CAST(DATE_TRUNC('WEEK', "lo") AS DATE),
    CAST(DATE_TRUNC('WEEK', "hi") AS DATE),
    INTERVAL '7' DAY
  ) AS DATE[])) AS "__series"("__s")
), "__month_agg0" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE) AS "__p",
    "__d0",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1",
    SUM("__q2") AS "__m2",
    (
      CAST(SUM("__q3") AS DOUBLE) / NULLIF(CAST(SUM("__q4") AS DOUBLE), 0)
    ) AS "__m3",
    SUM("__q5") AS "__n4",
    (
      CAST(SUM("__q6") AS DOUBLE) / NULLIF(CAST(SUM("__q7") AS DOUBLE), 0)
    ) AS "__m5"
  FROM "__pp"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE),
    "__d0"
), "__month_agg1" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE) AS "__p",
    QUANTILE_CONT(first_response_seconds, 0.9) AS "__m0",
    COUNT(*) FILTER(WHERE
      channel = 'chat') AS "__n1",
    MEDIAN(first_response_seconds) FILTER(WHERE
      channel = 'chat') AS "__m2"
  FROM "__rows"
  GROUP BY
    CAST(DATE_TRUNC('MONTH', "__p") AS DATE)
), "__month_spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "__bounds"
  CROSS JOIN UNNEST(CAST(GENERATE_SERIES(
    CAST(DATE_TRUNC('MONTH', "lo") AS DATE),
    CAST(DATE_TRUNC('MONTH', "hi") AS DATE),
    INTERVAL '1' MONTH
  ) AS DATE[])) AS "__series"("__s")
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
    CAST("__s"."period_start" + INTERVAL 7 DAY AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__week_spine" AS "__s"
  LEFT JOIN "__week_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'week' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 7 DAY AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__week_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'csat' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS DOUBLE) / NULLIF(
      CAST(CASE
        WHEN COALESCE("__a"."__n0", 0) > 0
        THEN CAST("__a"."__m2" AS DOUBLE)
        ELSE CAST(NULL AS DOUBLE)
      END AS DOUBLE),
      0
    ) AS "value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "numerator",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "denominator"
  FROM "__month_agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'avg_resolution_seconds' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m3" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'call_wrap_up_seconds' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n4", 0) > 0
      THEN CAST("__a"."__m5" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'first_response_p90' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CAST("__a"."__m0" AS DOUBLE) AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
  UNION ALL
  SELECT
    'chat_first_response_median' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS TEXT) AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n1", 0) > 0
      THEN CAST("__a"."__m2" AS DOUBLE)
      ELSE CAST(NULL AS DOUBLE)
    END AS "value",
    CAST(NULL AS DOUBLE) AS "numerator",
    CAST(NULL AS DOUBLE) AS "denominator"
  FROM "__month_spine" AS "__s"
  LEFT JOIN "__month_agg1" AS "__a"
    ON "__a"."__p" = "__s"."period_start"
) AS "__u";

-- derived: revenue_yoy_growth at month
INSERT INTO "kpi_stage" (
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
)
SELECT
  'revenue_yoy_growth' AS "name",
  'month' AS "grain",
  "__k"."period_start" AS "period_start",
  CAST("__k"."period_start" + INTERVAL 1 MONTH AS DATE) AS "period_end",
  "__k"."dimension" AS "dimension",
  "__k"."dimension_value" AS "dimension_value",
  CAST(CAST("__i0"."value" AS DOUBLE) / NULLIF(CAST("__i1"."value" AS DOUBLE), 0) - 1 AS DOUBLE) AS "value",
  CAST(NULL AS DOUBLE) AS "numerator",
  CAST(NULL AS DOUBLE) AS "denominator"
FROM (
  SELECT DISTINCT
    "period_start",
    "dimension",
    "dimension_value"
  FROM "kpi_stage"
  WHERE
    "grain" = 'month'
    AND "name" IN ('net_revenue')
    AND "dimension" IN ('', 'region', 'channel')
) AS "__k"
LEFT JOIN "kpi_stage" AS "__i0"
  ON "__i0"."name" = 'net_revenue'
  AND "__i0"."grain" = 'month'
  AND "__i0"."period_start" = "__k"."period_start"
  AND "__i0"."dimension" = "__k"."dimension"
  AND "__i0"."dimension_value" IS NOT DISTINCT FROM "__k"."dimension_value"
LEFT JOIN "kpi_stage" AS "__i1"
  ON "__i1"."name" = 'net_revenue'
  AND "__i1"."grain" = 'month'
  AND "__i1"."period_start" = CAST("__k"."period_start" + INTERVAL (-12) MONTH AS DATE)
  AND "__i1"."dimension" = "__k"."dimension"
  AND "__i1"."dimension_value" IS NOT DISTINCT FROM "__k"."dimension_value";
