"""The ground floor: helpers every package may use (files, secrets, errors, run folders); it imports none of ours."""
