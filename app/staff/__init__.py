"""The till: staff members, the devices they sign in on, and who did what at which location."""
