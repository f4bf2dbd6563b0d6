"""cirweb: the Django project. It never imports torch, CLIP or Faiss (see ARCHITECTURE.md)."""
