"""Engine: sequencing sweep, maintenance (leases), notifications, local worker backend."""
