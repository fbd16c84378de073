"""Lightning callbacks that monitor explanation quality during training."""
