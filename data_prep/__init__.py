"""Published dataset schemas -> the rows Axolotl reads, validated, with every dropped row kept and explained."""
