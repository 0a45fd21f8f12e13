select area, country, manager
from {{ ref('raw_areas') }}
