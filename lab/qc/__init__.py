"""Internal quality control: control materials, runs, Westgard rules, locks, moving averages."""
