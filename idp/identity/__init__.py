"""Citizens: the NIK, the population registry port, registration and passwords."""
