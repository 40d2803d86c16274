"""What each task is (model builder, data, metric, pre/post-processing), the checkpoint format and the artifact
contract (metadata and its schema). No Lightning here."""
