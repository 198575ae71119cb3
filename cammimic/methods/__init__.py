"""Camera-motion transfer methods. ``homography`` is the paper's naive-homography baseline."""
