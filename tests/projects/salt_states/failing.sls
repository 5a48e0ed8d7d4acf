doomed:
  cmd.run:
    - name: echo trying; exit 3
