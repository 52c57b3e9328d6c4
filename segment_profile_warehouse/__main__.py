import sys

from segment_profile_warehouse.sync import main

sys.exit(main())
