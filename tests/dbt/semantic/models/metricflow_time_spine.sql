-- MetricFlow's time spine: one row a day, well past the orders on both sides
select cast(d as date) as date_day
from range(date '2024-06-01', date '2026-01-01', interval 1 day) as t(d)
