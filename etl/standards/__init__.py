"""National code standards (GB 11643, GB 32100, ...): check characters and validators."""
