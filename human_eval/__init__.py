"""Human evaluation study: builder (`builder`), SQLite store (`store`), what an annotator sees (`display`),
the Streamlit pages (`views`, run as `app.py`), statistics and CSVs (`results`), and `serve`."""
