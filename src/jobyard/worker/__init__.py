"""Workers: acquire queued jobs, prepare them, run them, report. Same code local or remote."""
