"""Crops: every dog cut out by its box (or each photo centred), decoded in a pool of processes and
written as one array file that training reads without OpenCV or lxml."""
