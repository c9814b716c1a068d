"""Recipes and their registry."""

from kitchen.recipes.recipe import ADAPTER_FAMILIES, Recipe
from kitchen.recipes.registry import ENTRY_POINT_GROUP, get_recipe, list_recipes, register

__all__ = [
    "ADAPTER_FAMILIES",
    "ENTRY_POINT_GROUP",
    "Recipe",
    "get_recipe",
    "list_recipes",
    "register",
]
