"""Family samplers, one module per group: quadratic, synthetic, image, text.

Each module defines ``FamilySpec`` constants; :mod:`tasksets.registry` collects them.
"""
