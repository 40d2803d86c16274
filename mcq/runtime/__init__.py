"""Opening and running an exported artifact (one backend per format), prediction and the evaluation of artifacts."""
