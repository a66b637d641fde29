"""PSFR-GAN: semantic-aware face restoration conditioned on a face parsing map."""
