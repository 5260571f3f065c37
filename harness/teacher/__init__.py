"""Teacher data: sample or score chain-of-thought with top-k log-probabilities, store it resumably."""
