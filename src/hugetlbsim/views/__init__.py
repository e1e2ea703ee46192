"""What people look at: per-step tables and `explain`, counter plots, reservation-map strips
(`regions`) and the live machine's HugeTLB `status`."""
